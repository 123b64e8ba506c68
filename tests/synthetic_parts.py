"""Synthetic 'products' for expert tests: a textured part and the same part with a defect.

Each normal differs in its noise (so the bank has real variation to learn), the defect
is a dark blob in a known box, so tests can check where the map peaks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from workstation.core.imageio import write_png

DEFECT_BOX = (36, 44, 52, 60)
"""(y0, x0, y1, x1) of the drawn defect in a 96x96 image."""


def textured(seed: int, size: int = 96) -> np.ndarray:
    """A stripe texture with fresh fine noise per seed (RGB uint8)."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 18, (size, size, 3)), (0, 0), 1.2)
    stripes = 40 * np.sin(np.arange(size) / 2.5)[None, :, None]
    base = np.array([150, 130, 110], dtype=np.float64)[None, None, :]
    return np.clip(base + stripes + noise, 0, 255).astype(np.uint8)


def with_defect(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A textured image with a dark blob in DEFECT_BOX, and its 0/1 mask."""
    image = textured(seed, size).copy()
    y0, x0, y1, x1 = DEFECT_BOX
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.ellipse(mask, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2),
                0, 0, 360, 1, -1)
    image[mask > 0] = (25, 20, 60)
    return image, mask


def write_category(root: Path, *, train: int = 6, good: int = 3, bad: int = 3) -> Path:
    """An MVTec-layout category folder of synthetic parts (masks 0/255)."""
    for index in range(train):
        write_png(root / "train" / "good" / f"{index:03d}.png", textured(100 + index))
    for index in range(good):
        write_png(root / "test" / "good" / f"{index:03d}.png", textured(200 + index))
    for index in range(bad):
        image, mask = with_defect(300 + index)
        write_png(root / "test" / "dent" / f"{index:03d}.png", image)
        write_png(root / "ground_truth" / "dent" / f"{index:03d}_mask.png", mask * 255)
    return root
