"""Rounds end to end through the child process: success, faults, promote and roll back."""

from __future__ import annotations

from pathlib import Path

import pytest
from feedback_store import PRODUCT, add_feedback, feedback_store

from training.contract import ProgressEvent, RoundManifest
from training.kinds.adapter import AdapterHyperparameters
from workstation.core.errors import UserError
from workstation.services.rounds import (
    RoundHandle,
    RoundOptions,
    build_manifest,
    new_labels_since_last_round,
    run_round,
    split_samples,
)
from workstation.services.versions import promote, rollback

FAST = RoundOptions(
    image_size=96, holdout_fraction=0.25, hyperparameters={"steps": 20, "hidden": 8}, device="cpu"
)


@pytest.mark.slow
def test_round_registers_a_version_and_earlier_corrections_become_golden(tmp_path: Path) -> None:
    store = feedback_store(tmp_path)
    events: list[ProgressEvent] = []
    outcome = run_round(store, PRODUCT, FAST, on_event=events.append)
    assert outcome.status == "succeeded", outcome.message
    assert outcome.version is not None and outcome.version.kind == "adapter"
    assert outcome.round.result_version_id == outcome.version.id
    assert {"start", "step", "done"} <= {e.event for e in events}
    model = Path(outcome.version.path or "")
    assert (model / "adapter.pt").is_file() and (model / "metrics.json").is_file()
    assert "after.held_out_pixel_auroc" in outcome.version.metrics
    manifest = RoundManifest.load(Path(outcome.round.manifest_path))
    assert manifest.references and len(manifest.held_out) == 2
    # Next round: everything corrected before is golden (held out); new labels train,
    # starting from the active adapter when the gate promoted it.
    product = store.get_product(PRODUCT)
    assert new_labels_since_last_round(store, product, "adapter") == 0
    with pytest.raises(UserError, match="no corrected defect masks"):
        build_manifest(store, product, FAST, tmp_path / "second")
    add_feedback(store, tmp_path, normals=2, defects=2, first_seed=500)
    assert new_labels_since_last_round(store, product, "adapter") == 4
    second = build_manifest(store, product, FAST, tmp_path / "third")
    earlier = {s.image_path for s in manifest.train + manifest.held_out}
    assert {s.image_path for s in second.golden} == earlier
    assert not earlier & {s.image_path for s in second.train}
    if outcome.version.state == "active":
        assert second.extras.parent == outcome.version.path
    store.close()


def test_only_normal_feedback_is_refused_with_no_round(tmp_path: Path) -> None:
    store = feedback_store(tmp_path, defects=0)
    with pytest.raises(UserError, match=r"no adapter round for 'plate': no corrected defect masks"):
        run_round(store, PRODUCT, FAST)
    assert store.list_rounds(store.get_product(PRODUCT).id) == []
    store.close()


def test_empty_feedback_is_refused(tmp_path: Path) -> None:
    store = feedback_store(tmp_path, defects=0, normals=0)
    with pytest.raises(UserError, match="no corrected defect masks"):
        run_round(store, PRODUCT, FAST)
    store.close()


@pytest.mark.slow
def test_killed_round_registers_nothing_and_the_next_round_works(tmp_path: Path) -> None:
    store = feedback_store(tmp_path)
    product = store.get_product(PRODUCT)
    handle = RoundHandle()
    slow = RoundOptions(**{**FAST.__dict__, "hyperparameters": {"steps": 100000, "hidden": 8}})

    def kill_on_first_step(event: ProgressEvent) -> None:
        if event.event == "step":
            handle.cancel()

    outcome = run_round(store, PRODUCT, slow, on_event=kill_on_first_step, handle=handle)
    assert outcome.status == "cancelled" and outcome.version is None
    assert store.list_model_versions(product.id, kind="adapter") == []
    assert store.list_rounds(product.id)[-1].status == "cancelled"
    round_dir = Path(outcome.round.manifest_path).parent
    assert not (round_dir / "model").exists()
    assert not [p for p in round_dir.iterdir() if p.name.startswith(".model.")]
    again = run_round(store, PRODUCT, FAST)
    assert again.status == "succeeded" and again.version is not None
    store.close()


def test_golden_samples_always_held_out() -> None:
    from training.contract import Sample

    samples = (
        [Sample(f"/g{i}", "normal", golden=True) for i in range(3)]
        + [Sample(f"/n{i}", "normal") for i in range(4)]
        + [Sample(f"/d{i}", "anomalous", mask_path="m") for i in range(4)]
    )
    train, held = split_samples(samples, holdout_fraction=0.5, seed=3)
    assert all(s in held for s in samples if s.golden)
    assert not any(s.golden for s in train)
    assert {s.label for s in train} == {"normal", "anomalous"}


def test_promote_and_rollback(tmp_path: Path) -> None:
    store = feedback_store(tmp_path)
    product = store.get_product(PRODUCT)
    first = store.add_model_version(product.id, name="adapter-a", kind="adapter", state="active")
    second = store.add_model_version(
        product.id, name="adapter-b", kind="adapter", state="candidate", parent_id=first.id
    )
    assert promote(store, "adapter-b").state == "active"
    assert store.get_model_version("adapter-a").state == "retired"
    with pytest.raises(UserError, match="already the active"):
        promote(store, "adapter-b")
    back = rollback(store, PRODUCT, "adapter")
    assert back is not None and back.name == "adapter-a" and back.state == "active"
    assert store.get_model_version(second.id).state == "rolled_back"
    assert rollback(store, PRODUCT, "adapter") is None
    with pytest.raises(UserError, match="no active adapter version"):
        rollback(store, PRODUCT, "adapter")
    store.close()


def test_rounds_from_settings_train_and_judge_at_the_experts_working_size() -> None:
    from dataclasses import replace

    from workstation.config import Settings

    settings = Settings()
    settings = replace(settings, experts=replace(settings.experts, image_size=384))
    adapter = RoundOptions.from_settings(settings, "adapter", hyperparameters={"steps": 5})
    assert adapter.image_size == 384
    assert adapter.hyperparameters == AdapterHyperparameters(steps=5)
    assert adapter.base_model == ""
    assert adapter.device == settings.device.preference
    vlm = RoundOptions.from_settings(settings, "vlm", device="cpu")
    assert vlm.base_model == settings.explainer.vlm
    assert vlm.hyperparameters.model == settings.explainer.vlm
    assert vlm.device == "cpu"
