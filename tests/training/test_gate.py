"""The promotion gate: golden set first, tolerance respected, reasons spelled out."""

from __future__ import annotations

import numpy as np

from training.evaluate import ScoredSample, gate, held_out_metrics


def test_promotes_when_nothing_regresses() -> None:
    decision = gate(
        {"golden_pixel_auroc": 0.80, "golden_image_auroc": 0.9},
        {"golden_pixel_auroc": 0.85, "golden_image_auroc": 0.895},
        tolerance=0.01,
    )
    assert decision.promote
    assert "no regression" in decision.reason


def test_golden_regression_keeps_a_candidate_with_the_reason() -> None:
    decision = gate(
        {"golden_pixel_auroc": 0.80, "held_out_pixel_auroc": 0.7},
        {"golden_pixel_auroc": 0.75, "held_out_pixel_auroc": 0.9},
        tolerance=0.01,
    )
    assert not decision.promote
    assert "golden set" in decision.reason and "0.800 -> 0.750" in decision.reason
    assert decision.regressions == ("golden_pixel_auroc: 0.800 -> 0.750",)


def test_without_golden_set_held_out_metrics_decide() -> None:
    worse = gate({"held_out_image_auroc": 0.9}, {"held_out_image_auroc": 0.7}, tolerance=0.05)
    assert not worse.promote and "held-out set" in worse.reason
    better = gate({"held_out_image_auroc": 0.7}, {"held_out_image_auroc": 0.9}, tolerance=0.05)
    assert better.promote


def test_nothing_to_compare_is_not_promoted() -> None:
    decision = gate({}, {"held_out_count": 3.0}, tolerance=0.01)
    assert not decision.promote
    assert "no held-out metric" in decision.reason


def test_held_out_metrics_cover_golden_part() -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 1
    hot = mask.astype(np.float32)
    samples = [
        ScoredSample(hot, 1.0, True, mask, golden=True),
        ScoredSample(np.zeros((8, 8), np.float32), 0.1, False, np.zeros_like(mask), golden=True),
        ScoredSample(np.zeros((8, 8), np.float32), 0.2, False, np.zeros_like(mask), golden=False),
    ]
    metrics = held_out_metrics(samples)
    assert metrics["held_out_image_auroc"] == 1.0
    assert metrics["golden_image_auroc"] == 1.0
    assert metrics["golden_pixel_auroc"] == 1.0
    assert metrics["golden_count"] == 2.0
