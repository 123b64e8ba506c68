"""The self-taught round: trains from normals alone, judges on held-out images, resumes
from its checkpoint, and fails cleanly (nothing promoted) when training goes wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from feedback_store import PRODUCT, feedback_store
from synthetic_parts import textured

from training.contract import ProgressEvent
from training.kinds.selftaught import CHECKPOINT_DIR
from training.selftaught import (
    CHECKPOINT_FILE,
    SelfTaughtHyperparameters,
    TrainingDivergedError,
    learning_rate,
    train_network,
)
from training.selftaught_round import fit_selftaught, selftaught_gate, split_for_calibration
from workstation.core.errors import UserError
from workstation.experts.selftaught import SelfTaughtConfig, SelfTaughtError, SelfTaughtExpert
from workstation.services.rounds import RoundOptions, build_manifest, run_round
from workstation.services.versions import rollback

TINY = {"steps": 6, "crop": 32, "width": 4, "batch_size": 4, "checkpoint_every_s": 0.0}
FAST = RoundOptions(
    kind="selftaught", image_size=96, holdout_fraction=0.4, hyperparameters=TINY, device="cpu"
)


def _hyper(**changes: object) -> SelfTaughtHyperparameters:
    return SelfTaughtHyperparameters.from_dict({**TINY, **changes})


def _config(shape: tuple[int, int] = (96, 96)) -> SelfTaughtConfig:
    return SelfTaughtConfig(shape=shape, mean=(128, 128, 128), std=(50, 50, 50), width=4)


def test_training_on_normals_writes_a_model_that_loads(tmp_path: Path) -> None:
    normals = [textured(seed) for seed in range(4)]
    expert, record = fit_selftaught(normals, image_size=96, hyper=_hyper(), seed=0)
    assert record.steps == 6 and np.isfinite(record.final_loss)
    assert expert.config.trained["normals"] == 3.0  # one kept unseen for calibration
    assert sum(expert.has_seen(n) for n in normals) == 3
    folder = expert.save(tmp_path / "model")
    assert SelfTaughtExpert.load(folder).predict([normals[0]])[0].map.shape == (96, 96)


def test_bad_normals_one_image_mixed_sizes_gray_rgba_16_bit(tmp_path: Path) -> None:
    one, _ = fit_selftaught([textured(1)], image_size=96, hyper=_hyper(), seed=0)
    assert one.config.trained["normals"] == 1.0  # nothing left to keep out: trains on it
    base = textured(2, size=112)
    mixed = [
        textured(3),
        base[:80, :100],
        base[:, :, 0],
        np.dstack([textured(4), np.full((96, 96), 255, np.uint8)]),
        textured(5).astype(np.uint16) * 257,
    ]
    expert, _ = fit_selftaught(mixed, image_size=96, hyper=_hyper(), seed=0)
    assert all(side % 16 == 0 for side in expert.config.shape)
    assert [m.map.shape for m in expert.predict(mixed)] == [im.shape[:2] for im in mixed]


def test_a_nan_loss_stops_the_round_with_a_clear_message() -> None:
    normals = [textured(seed) for seed in range(2)]
    with pytest.raises(TrainingDivergedError, match=r"diverged.*Lower the learning rate"):
        train_network(normals, _config(), _hyper(steps=50, learning_rate=1e12), seed=0)


def test_training_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    normals = [textured(seed) for seed in range(2)]
    train_network(normals, _config(), _hyper(steps=4), checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    _, record = train_network(normals, _config(), _hyper(steps=7), checkpoint_dir=tmp_path)
    assert record.resumed_from_step == 4 and record.steps == 7


def test_a_checkpoint_of_another_layout_is_refused(tmp_path: Path) -> None:
    normals = [textured(seed) for seed in range(2)]
    train_network(normals, _config(), _hyper(steps=2), checkpoint_dir=tmp_path)
    with pytest.raises(SelfTaughtError, match=r"another network layout.*delete it"):
        train_network(normals, _config((64, 64)), _hyper(steps=4), checkpoint_dir=tmp_path)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"garbage")
    with pytest.raises(SelfTaughtError, match="damaged"):
        train_network(normals, _config(), _hyper(steps=4), checkpoint_dir=tmp_path)


def test_the_schedule_warms_up_then_decays() -> None:
    assert learning_rate(0.0, 1.0) == pytest.approx(0.1)
    assert learning_rate(0.05, 1.0) == pytest.approx(1.0)
    assert learning_rate(1.0, 1.0) == pytest.approx(0.01)
    assert learning_rate(0.5, 1.0) < learning_rate(0.2, 1.0)


def test_calibration_split_keeps_at_least_one_image_to_train_on() -> None:
    assert split_for_calibration(1, 0.25, 0) == ([0], [])
    train, unseen = split_for_calibration(8, 0.25, 0)
    assert len(train) == 6 and len(unseen) == 2 and not set(train) & set(unseen)


def test_the_gate_refuses_added_false_alarms_and_worse_detection() -> None:
    before = {"held_out_false_alarm_rate": 0.1, "held_out_synthetic_image_auroc": 0.8}
    ok, reason = selftaught_gate(
        before,
        {"held_out_false_alarm_rate": 0.1, "held_out_synthetic_image_auroc": 0.9},
        tolerance=0.01,
    )
    assert ok, reason
    ok, reason = selftaught_gate(
        before,
        {"held_out_false_alarm_rate": 0.2, "held_out_synthetic_image_auroc": 0.99},
        tolerance=0.01,
    )
    assert not ok and "false alarms on held-out normals" in reason
    ok, reason = selftaught_gate(
        before,
        {"held_out_false_alarm_rate": 0.0, "held_out_synthetic_image_auroc": 0.7},
        tolerance=0.01,
    )
    assert not ok and "regressed" in reason
    recall = "held_out_synthetic_recall"
    ok, reason = selftaught_gate(
        before | {recall: 0.5},
        {"held_out_false_alarm_rate": 0.05, "held_out_synthetic_image_auroc": 0.9, recall: 0.4},
        tolerance=0.01,
    )
    assert ok, "fewer false alarms pay with recall at the threshold: " + reason
    ok, reason = selftaught_gate(
        before | {recall: 0.5},
        {"held_out_false_alarm_rate": 0.1, "held_out_synthetic_image_auroc": 0.9, recall: 0.4},
        tolerance=0.01,
    )
    assert not ok and recall in reason


@pytest.mark.slow
def test_a_round_through_the_child_process_registers_a_judged_version(tmp_path: Path) -> None:
    store = feedback_store(tmp_path, normals=4, defects=2, references=4)
    product = store.get_product(PRODUCT)
    manifest = build_manifest(store, product, FAST, tmp_path / "preview")
    held = {s.image_path for s in manifest.held_out}
    assert manifest.references and not held & set(manifest.references)
    assert sum(s.label == "normal" for s in manifest.held_out) >= 2
    events: list[ProgressEvent] = []
    outcome = run_round(store, PRODUCT, FAST, on_event=events.append)
    assert outcome.status == "succeeded", outcome.message
    assert outcome.version is not None and outcome.version.kind == "selftaught"
    assert "step" in {e.event for e in events}
    metrics = json.loads((Path(outcome.version.path or "") / "metrics.json").read_text())
    for side in ("before", "after"):
        assert 0.0 <= metrics[side]["held_out_false_alarm_rate"] <= 1.0
        assert "held_out_synthetic_image_auroc" in metrics[side]
    assert metrics["training"]["steps"] == 6
    round_dir = Path(outcome.round.manifest_path).parent
    assert not (round_dir / CHECKPOINT_DIR).exists()  # a finished round keeps no checkpoint
    store.close()


@pytest.mark.slow
def test_a_diverging_round_fails_and_the_active_version_stays(tmp_path: Path) -> None:
    store = feedback_store(tmp_path, normals=4, defects=0, references=4)
    first = run_round(store, PRODUCT, FAST)
    assert first.version is not None
    if first.version.state != "active":
        from workstation.services.versions import promote

        promote(store, first.version.name)
    bad = RoundOptions(
        kind="selftaught",
        image_size=96,
        holdout_fraction=0.4,
        hyperparameters={**TINY, "steps": 60, "learning_rate": 1e12},
        device="cpu",
    )
    outcome = run_round(store, PRODUCT, bad)
    assert outcome.status == "failed" and "diverged" in outcome.message
    active = store.active_model_version(store.get_product(PRODUCT).id, "selftaught")
    assert active is not None and active.name == first.version.name
    assert rollback(store, PRODUCT, "selftaught") is None
    store.close()


@pytest.mark.slow
def test_a_killed_round_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    store = feedback_store(tmp_path, normals=4, defects=0, references=4)
    slow = RoundOptions(
        kind="selftaught",
        image_size=96,
        holdout_fraction=0.4,
        hyperparameters={**TINY, "steps": 100000, "budget_minutes": 10},
        device="cpu",
    )
    from workstation.services.rounds import RoundHandle

    handle = RoundHandle()
    seen: list[int] = []

    def kill_after_checkpoints(event: ProgressEvent) -> None:
        if event.step is not None:
            seen.append(event.step)
            if event.step >= 3:
                handle.cancel()  # SIGKILL of the child, as a crash would be

    killed = run_round(store, PRODUCT, slow, on_event=kill_after_checkpoints, handle=handle)
    assert killed.status == "cancelled" and killed.version is None
    round_dir = Path(killed.round.manifest_path).parent
    assert (round_dir / CHECKPOINT_DIR / CHECKPOINT_FILE).is_file()
    # Resume with a short budget this time: the round continues and finishes.
    quick = RoundOptions(kind="selftaught", image_size=96, hyperparameters=TINY, device="cpu")
    manifest_path = round_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["hyperparameters"]["steps"] = max(seen) + 4
    manifest_path.write_text(json.dumps(manifest))
    resumed = run_round(store, PRODUCT, quick, resume=True)
    assert resumed.status == "succeeded", resumed.message
    assert resumed.round.id == killed.round.id
    metrics = json.loads((Path(resumed.version.path or "") / "metrics.json").read_text())
    assert metrics["training"]["resumed_from_step"] >= 1
    with pytest.raises(UserError, match="no interrupted selftaught round"):
        run_round(store, PRODUCT, quick, resume=True)
    store.close()


def test_torch_is_left_deterministic_enough_for_a_same_seed_round() -> None:
    normals = [textured(seed) for seed in range(3)]
    torch.set_num_threads(1)
    a, _ = fit_selftaught(normals, image_size=96, hyper=_hyper(), seed=3)
    b, _ = fit_selftaught(normals, image_size=96, hyper=_hyper(), seed=3)
    probe = [textured(11)]
    assert np.allclose(a.predict(probe)[0].map, b.predict(probe)[0].map, atol=1e-5)
