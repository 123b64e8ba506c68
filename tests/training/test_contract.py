"""Manifest round trip, split invariants, progress-line parsing, feedback checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.contract import (
    ContractError,
    NotEnoughFeedbackError,
    ProgressEvent,
    RoundExtras,
    RoundManifest,
    Sample,
    check_feedback,
    parse_event,
)
from workstation.core.errors import UserError


def _manifest(**changes: object) -> RoundManifest:
    values: dict[str, object] = {
        "product": "plate",
        "kind": "adapter",
        "backbone": "filterbank",
        "base_model": "",
        "train": (
            Sample("/d/a.png", "anomalous", image_id=1, mask_path="/m/1.npy"),
            Sample("/d/b.png", "normal", image_id=2),
        ),
        "held_out": (
            Sample("/d/c.png", "normal", image_id=3, golden=True),
            Sample(
                "/d/e.png",
                "anomalous",
                image_id=5,
                mask_path="/m/5.npy",
                explanation={"verdict": "anomalous", "defect_type": "dent"},
            ),
        ),
        "references": ("/d/ref.png",),
        "hyperparameters": {"steps": 3},
        "extras": RoundExtras(parent="/x"),
        "seed": 7,
    }
    values.update(changes)
    return RoundManifest(**values)  # type: ignore[arg-type]


def test_manifest_round_trip(tmp_path: Path) -> None:
    manifest = _manifest()
    path = manifest.save(tmp_path / "r" / "manifest.json")
    again = RoundManifest.load(path)
    assert again == manifest
    assert again.golden == (manifest.held_out[0],)
    assert not list(tmp_path.rglob("*.tmp"))


def test_golden_sample_in_train_is_refused() -> None:
    with pytest.raises(ContractError, match="golden"):
        _manifest(train=(Sample("/d/a.png", "normal", golden=True),))


def test_image_on_both_sides_is_refused() -> None:
    with pytest.raises(ContractError, match="also in train"):
        _manifest(held_out=(Sample("/d/a.png", "anomalous", mask_path="/m/1.npy"),))


def test_bad_kind_and_label_are_refused() -> None:
    with pytest.raises(ContractError, match="round kind"):
        _manifest(kind="lora")
    with pytest.raises(ContractError, match="sample label"):
        Sample("/d/a.png", "broken")  # type: ignore[arg-type]


def test_manifest_from_garbage_is_a_contract_error(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    bad.write_text('{"product": "x"}')
    with pytest.raises(ContractError, match="not a round manifest"):
        RoundManifest.load(bad)
    with pytest.raises(ContractError, match="cannot read"):
        RoundManifest.load(tmp_path / "missing.json")


def test_progress_lines_round_trip_and_chatter_is_ignored() -> None:
    event = ProgressEvent("step", step=3, total=10, loss=0.25, eta_s=1.5)
    assert parse_event(event.to_line()) == event
    done = ProgressEvent("done", out="/x/model", metrics={"promote": True})
    assert parse_event(done.to_line() + "\n") == done
    assert parse_event("Some library warning") is None
    assert parse_event("{not json") is None
    assert parse_event('{"event": "explode"}') is None
    assert parse_event('{"step": 1}') is None


def test_nan_loss_is_written_as_null() -> None:
    line = ProgressEvent("step", step=1, total=2, loss=float("nan")).to_line()
    assert "NaN" not in line
    parsed = parse_event(line)
    assert parsed is not None and parsed.loss is None


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ((), "no corrected defect masks"),
        ((Sample("/a", "normal"), Sample("/b", "normal")), r"2 normal image\(s\) only"),
        ((Sample("/a", "anomalous", mask_path="/m.npy"),), "only defective images"),
    ],
)
def test_adapter_feedback_must_have_both_sides(train: tuple[Sample, ...], message: str) -> None:
    with pytest.raises(NotEnoughFeedbackError, match=message):
        check_feedback("adapter", train)


def test_vlm_feedback_needs_both_verdicts() -> None:
    normal = Sample("/a", "normal", explanation={"verdict": "normal"})
    bad = Sample("/b", "anomalous", explanation={"verdict": "anomalous"})
    with pytest.raises(NotEnoughFeedbackError, match="no reviewed explanations"):
        check_feedback("vlm", (Sample("/c", "normal"),))
    with pytest.raises(NotEnoughFeedbackError, match="both"):
        check_feedback("vlm", (normal,))
    check_feedback("vlm", (normal, bad))


def test_manifest_before_extras_moves_the_app_keys_out_of_the_hyperparameters() -> None:
    """Manifests written before RoundExtras (kept for ``train --resume``) still load."""
    raw = json.loads(_manifest(extras=RoundExtras()).to_json())
    del raw["extras"]
    raw["hyperparameters"] = {
        "steps": 3,
        "regression_tolerance": 0.05,
        "parent_adapter": "/p",
        "checkpoint_dir": "/c",
    }
    old = RoundManifest.from_json(json.dumps(raw))
    assert old.hyperparameters == {"steps": 3}
    assert old.extras == RoundExtras(regression_tolerance=0.05, parent="/p", checkpoint_dir="/c")
    assert old.typed_hyperparameters().steps == 3


def test_mistyped_hyperparameter_in_a_manifest_is_refused_by_name() -> None:
    manifest = _manifest(hyperparameters={"step": 3})
    with pytest.raises(UserError, match=r"unknown adapter hyperparameter setting 'step'.*steps"):
        manifest.typed_hyperparameters()


def test_unregistered_kind_is_not_a_manifest() -> None:
    with pytest.raises(ContractError, match="unknown trained model kind 'lora'"):
        _manifest(kind="lora")
