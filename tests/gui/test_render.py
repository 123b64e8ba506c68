"""Heatmap display: where the model looks stays visible below the threshold, on any scale."""

from __future__ import annotations

import cv2
import numpy as np

from workstation.gui.launch import application
from workstation.gui.render import heatmap_qimage, reduce_heatmap


def alpha(image) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The alpha channel of a premultiplied ARGB32 QImage."""
    bits = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), -1, 4)
    return bits[:, : image.width(), 3]


def calibrated_map(peak: float) -> np.ndarray:
    """A calibrated score map: normal texture around -1.5, one blob rising to ``peak``."""
    rng = np.random.default_rng(0)
    heat = rng.normal(-1.5, 0.1, (64, 96)).astype(np.float32)
    blob = np.zeros_like(heat)
    cv2.circle(blob, (60, 30), 6, 1.0, -1)
    blob = cv2.GaussianBlur(blob, (0, 0), 3)
    return heat + blob / blob.max() * (peak + 1.5)


def test_a_near_miss_below_the_threshold_shows_on_a_calm_background(qtbot) -> None:  # type: ignore[no-untyped-def]
    application()
    heat = calibrated_map(0.6)
    a = alpha(heatmap_qimage(reduce_heatmap(heat, threshold=1.0), "cividis"))
    assert a[30, 60] > 150  # the blob, though under the threshold, is plainly visible
    shoulder = (heat > -0.7) & (heat < -0.3)  # below zero too: calibrated scores
    assert shoulder.any() and a[shoulder].mean() > 80
    assert np.median(a) < 20  # the normal texture stays see-through


def test_a_normal_image_stays_calm(qtbot) -> None:  # type: ignore[no-untyped-def]
    application()
    heat = np.random.default_rng(1).normal(-1.5, 0.1, (64, 96)).astype(np.float32)
    image = heatmap_qimage(reduce_heatmap(heat, threshold=1.0), "viridis")
    assert alpha(image).max() < 80


def test_without_a_threshold_the_map_spans_its_own_range(qtbot) -> None:  # type: ignore[no-untyped-def]
    application()
    display = reduce_heatmap(calibrated_map(2.0), threshold=None)
    assert display.vmax == np.float32(calibrated_map(2.0).max())
    assert alpha(heatmap_qimage(display, "turbo"))[30, 60] == 255
