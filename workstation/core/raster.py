"""Very large images (a 20000 x 20000 scan) as a disk-backed pyramid, read a tile at a time.

Decoded, such a scan is 1.2 GB of RGB; the review window showed images by decoding them
whole and copying them into Qt tiles, twice that again. Here the image is decoded once,
in a child process (``python -m workstation.core.raster IMAGE FOLDER``) so the app's own
memory never holds it, into uncompressed ``.npy`` files: level 0 at full resolution and
each further level halved, down to at most ``TOP_SIDE`` on the long side. The app then
opens them as read-only memory maps; the OS pages in only the tiles that are looked at or
scored, so memory stays bounded by what is on screen (``gui.tiled_view``) or in one
scoring tile (``experts.tiled``).

The folder is keyed by the file's content hash, so an edited file gets a new pyramid and
an unchanged one is built once; ``complete`` is written last, so a half-built pyramid
(a crash, a kill) is rebuilt rather than used. The child is told this process's pixel
limit (``--max-pixels``): it reads no settings of its own, and must refuse what the app
refuses, and accept what a raised ``[limits] max_image_megapixels`` lets through.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from workstation.core.errors import UserError

TOP_SIDE = 2048
"""The smallest level's long side is at most this (the whole image on one screen)."""
COMPLETE = "complete"
BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Raster:
    """A pyramid of read-only (H, W, 3) uint8 memory maps; ``levels[k]`` is 2**k smaller."""

    folder: Path
    levels: tuple[np.ndarray, ...]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) at full resolution."""
        h, w = self.levels[0].shape[:2]
        return w, h

    def level_for(self, scale: float) -> int:
        """The coarsest level still at least as sharp as ``scale`` screen px per image px."""
        level = 0
        while level + 1 < len(self.levels) and 2 ** (level + 1) * scale <= 1.0:
            level += 1
        return level

    def reduced(self, max_side: int) -> np.ndarray:
        """The whole image from the finest level whose long side is at most ``max_side``
        (the coarsest level when none is that small)."""
        level = next(
            (k for k, lv in enumerate(self.levels) if max(lv.shape[:2]) <= max_side),
            len(self.levels) - 1,
        )
        return np.ascontiguousarray(self.levels[level])

    def at_least(self, side: int) -> np.ndarray:
        """The whole image from the coarsest level whose long side is at least ``side``
        (full resolution when the image is smaller): what the experts, which shrink every
        image to their working size, need instead of a full decode."""
        level = max((k for k, lv in enumerate(self.levels) if max(lv.shape[:2]) >= side), default=0)
        return np.ascontiguousarray(self.levels[level])

    def region(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """A copy of ``levels[level][y0:y1, x0:x1]`` (coordinates of that level)."""
        return np.ascontiguousarray(self.levels[level][y0:y1, x0:x1])


def tiles_folder(store_path: Path | str, sha256: str) -> Path:
    """Where a store keeps the pyramid of the image with content hash ``sha256``."""
    return Path(f"{store_path}.tiles") / sha256


def read_large(
    image_path: Path | str, store_path: Path | str, sha256: str, side: int
) -> np.ndarray:
    """A very large image for the experts: from its pyramid, at least ``side`` long."""
    return ensure_raster(image_path, tiles_folder(store_path, sha256)).at_least(side)


def level_count(width: int, height: int, top_side: int = TOP_SIDE) -> int:
    count, side = 1, max(width, height)
    while side > top_side:
        side = -(-side // 2)
        count += 1
    return count


def build(image_path: Path, folder: Path, *, top_side: int = TOP_SIDE) -> None:
    """Decode ``image_path`` and write the pyramid into ``folder`` (the child's work)."""
    from workstation.core.imageio import read_image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMPLETE).unlink(missing_ok=True)
    current = read_image(image_path)
    h, w = current.shape[:2]
    for level in range(level_count(w, h, top_side)):
        if level:
            ph, pw = current.shape[:2]
            size = (max(1, -(-pw // 2)), max(1, -(-ph // 2)))
            current = cv2.resize(current, size, interpolation=cv2.INTER_AREA)
        np.save(folder / f"level{level}.npy", current)
    (folder / COMPLETE).write_text(f"{w} {h}\n", encoding="utf-8")


def open_raster(folder: Path) -> Raster | None:
    """The pyramid in ``folder`` if it was built completely, else None."""
    if not (folder / COMPLETE).is_file():
        return None
    levels = []
    level = 0
    while (path := folder / f"level{level}.npy").is_file():
        levels.append(np.load(path, mmap_mode="r"))
        level += 1
    return Raster(folder, tuple(levels)) if levels else None


def ensure_raster(image_path: Path | str, folder: Path) -> Raster:
    """The pyramid of ``image_path`` in ``folder``, built by a child process if missing."""
    found = open_raster(folder)
    if found is not None:
        return found
    from workstation.core.imageio import max_pixels

    command = [
        sys.executable, "-m", "workstation.core.raster", str(image_path), str(folder),
        "--max-pixels", str(max_pixels()),
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"preparing the tiles of {Path(image_path).name} took too long") from None
    raster = open_raster(folder)
    if done.returncode != 0 or raster is None:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"could not prepare the tiles of {Path(image_path).name}: {last}")
    return raster


@contextmanager
def scratch_raster(image_path: Path | str, parent: Path) -> Iterator[Raster]:
    """The pyramid of a file that is not in the store, in a folder under ``parent`` that
    is removed afterwards: a one-off file should not leave gigabytes of levels behind."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="scratch-", dir=parent))
    try:
        yield ensure_raster(image_path, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _main(argv: list[str]) -> int:
    from workstation.core.untrusted import set_limits, with_limits

    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--max-pixels"):
        print(
            "usage: python -m workstation.core.raster IMAGE FOLDER [--max-pixels N]",
            file=sys.stderr,
        )
        return 2
    try:
        if len(argv) == 4:
            set_limits(with_limits(image_pixels=int(argv[3])))
        build(Path(argv[0]), Path(argv[1]))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
