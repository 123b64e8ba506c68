"""Helpers that write tiny datasets (MVTec layouts, noise images, masks) and damage store
files, for the store and dataset tests (imported by the test modules)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from workstation.core.imageio import write_png


def noise_image(seed: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A distinct RGB image per seed (distinct content hash)."""
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def square_mask(
    size: tuple[int, int] = (48, 64), box: tuple[int, int, int, int] = (5, 5, 20, 30)
) -> np.ndarray:
    mask = np.zeros(size, dtype=np.uint8)
    y0, x0, y1, x1 = box
    mask[y0:y1, x0:x1] = 1
    return mask


def make_mvtec(
    root: Path,
    *,
    train: int = 3,
    test_good: int = 2,
    defects: dict[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """Write an MVTec category folder; defect images get a rectangle mask (0/255 PNG)."""
    defects = {"scratch": 2} if defects is None else defects
    counter = seed * 1000
    for split, label, count in [("train", "good", train), ("test", "good", test_good)] + [
        ("test", name, n) for name, n in defects.items()
    ]:
        for index in range(count):
            counter += 1
            write_png(root / split / label / f"{index:03d}.png", noise_image(counter))
            if label != "good":
                mask = square_mask(box=(2 + index, 3, 20 + index, 30))
                write_png(root / "ground_truth" / label / f"{index:03d}_mask.png", mask * 255)
    return root


def corrupt_page_of(db: Path, marker: bytes) -> int:
    """Overwrite the b-tree page header of the page holding ``marker``; return its number.

    Call it on a closed store: its write-ahead log is folded into the file first, so the
    damage is in the file every later connection reads.
    """
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    offset = data.find(marker)
    assert offset > page_size, "the marker must be on a data page, not the schema page"
    page = offset // page_size
    data[page * page_size : page * page_size + 12] = b"\xff" * 12
    db.write_bytes(bytes(data))
    return page + 1
