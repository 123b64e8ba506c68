"""Which views of the normal shots the few-shot bank holds, and which shots calibrate it.

Flipped / rotated copies let a few shots cover more appearance; calibration scores a spread
of the shots leave-one-out, capped so that a large product stays quick to fit.
"""

from __future__ import annotations

import numpy as np


def augmentations(image: np.ndarray, square: bool) -> list[np.ndarray]:
    """The image, its flips and (for ``square`` shapes) two 90-degree rotations."""
    variants = [image, image[:, ::-1], image[::-1, :], image[::-1, ::-1]]
    if square:
        rotated = np.rot90(image)
        variants += [rotated, rotated[::-1, ::-1]]
    return [np.ascontiguousarray(v) for v in variants]


MAX_CALIBRATION_SHOTS = 32
"""Leave-one-out calibration scores at most this many shots (evenly spread)."""


def calibration_indices(count: int) -> list[int]:
    """Which of ``count`` normal shots are scored for calibration (all, up to the cap)."""
    if count <= 0:
        return []
    spread = np.linspace(0, count - 1, min(count, MAX_CALIBRATION_SHOTS)).round()
    return [int(i) for i in np.unique(spread)]
