"""Metrics against hand-computed cases and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve, roc_auc_score

from workstation.core import metrics


def test_auroc_hand_cases() -> None:
    assert metrics.auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert metrics.auroc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0
    # One tie between a positive and a negative counts a half: (1 + 1 + 0.5 + 1) / 4.
    assert metrics.auroc(np.array([0, 1, 0, 1]), np.array([0.1, 0.5, 0.5, 0.9])) == 0.875
    assert np.isnan(metrics.auroc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_f1_max_hand_case() -> None:
    # Threshold 0.35 flags exactly the two positives: F1 = 1.
    labels = np.array([0, 1, 0, 1])
    scores = np.array([0.1, 0.35, 0.3, 0.8])
    assert metrics.f1_max(labels, scores) == pytest.approx(1.0)


def test_f1_max_exact_value() -> None:
    # Thresholds: 0.9 -> P=0,R=0; 0.5 -> tp1 fp1 F1=0.5; 0.1 -> tp2 fp1 F1=0.8.
    assert metrics.f1_max(np.array([0, 1, 1]), np.array([0.9, 0.5, 0.1])) == pytest.approx(0.8)


@pytest.mark.parametrize("seed", range(5))
def test_image_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.7, 1.0), 1)  # rounding makes ties
    assert metrics.auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = np.max(2 * precision * recall / np.maximum(precision + recall, 1e-12))
    assert metrics.f1_max(labels, scores) == pytest.approx(f1)


def test_pixel_auroc_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    masks = [(rng.random((40, 50)) < 0.1).astype(np.uint8) for _ in range(4)]
    maps = [rng.normal(m * 1.5, 1.0).astype(np.float32) for m in masks]
    flat_labels = np.concatenate([m.ravel() for m in masks])
    flat_scores = np.concatenate([m.ravel() for m in maps])
    assert metrics.pixel_auroc(maps, masks) == pytest.approx(
        roc_auc_score(flat_labels, flat_scores), abs=1e-4
    )


def _aupro_reference(maps: list[np.ndarray], masks: list[np.ndarray], max_fpr: float) -> float:
    """Brute force: every distinct score as a threshold, exact per-region overlaps."""
    import cv2

    regions = []
    for index, mask in enumerate(masks):
        count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        regions += [(index, labels == r) for r in range(1, count)]
    normal = np.concatenate([m[k == 0] for m, k in zip(maps, masks, strict=True)])
    xs, ys = [0.0], [0.0]
    for t in np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]:
        xs.append(float((normal >= t).mean()))
        ys.append(float(np.mean([(maps[i][r] >= t).mean() for i, r in regions])))
    xs_a, ys_a = np.array(xs), np.array(ys)
    keep = xs_a <= max_fpr
    x_in, y_in = xs_a[keep], ys_a[keep]
    after = np.flatnonzero(~keep)
    if after.size:
        j = after[0]
        y_lim = ys_a[j - 1] + (ys_a[j] - ys_a[j - 1]) * (max_fpr - xs_a[j - 1]) / (
            xs_a[j] - xs_a[j - 1]
        )
        x_in, y_in = np.append(x_in, max_fpr), np.append(y_in, y_lim)
    return float(np.trapezoid(y_in, x_in) / max_fpr)


def test_aupro_perfect_and_reference() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = 1
    mask[12:18, 10:19] = 1
    perfect = mask.astype(np.float32) + 0.01 * np.arange(400).reshape(20, 20) / 400
    assert metrics.aupro([perfect], [mask]) == pytest.approx(1.0, abs=1e-3)
    rng = np.random.default_rng(0)
    maps = [np.round(rng.normal(mask * 1.2, 1.0), 2).astype(np.float32) for _ in range(3)]
    masks = [mask, np.zeros_like(mask), mask]
    assert metrics.aupro(maps, masks) == pytest.approx(
        _aupro_reference(maps, masks, 0.3), abs=2e-3
    )


def test_aupro_weights_regions_equally() -> None:
    # A tiny region found perfectly and a big region missed: PRO ~ 0.5, not ~ area share.
    mask = np.zeros((30, 30), np.uint8)
    mask[0:2, 0:2] = 1
    mask[10:30, 10:30] = 1
    heat = np.zeros((30, 30), np.float32)
    heat[0:2, 0:2] = 5.0
    heat[10:30, 10:30] = -1.0
    assert metrics.aupro([heat], [mask]) == pytest.approx(0.5, abs=0.02)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="labels but"):
        metrics.auroc(np.array([0, 1]), np.array([0.1]))
    with pytest.raises(ValueError, match="NaN"):
        metrics.auroc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="shape"):
        metrics.pixel_auroc([np.zeros((2, 2))], [np.zeros((3, 3))])
    assert np.isnan(metrics.aupro([np.zeros((4, 4))], [np.zeros((4, 4))]))
