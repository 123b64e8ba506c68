"""Mask editing operations behind the canvas tools, as plain numpy (no Qt).

:class:`MaskEditor` owns one image's mask (uint8 0/1, image-sized) and its undo stack. Every
operation returns the box it changed so the canvas repaints only those tiles. Strokes back
up each 256-pixel tile the first time they touch it, so the undo step of a stroke on a huge
mask costs only the touched area, not a whole-mask copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import cv2
import numpy as np

from workstation.core.undo import Box, MaskDiff, UndoStack, diff_masks

Tool = Literal["brush", "eraser", "polygon", "lasso", "fill", "pan"]
TOOLS: tuple[Tool, ...] = ("brush", "eraser", "polygon", "lasso", "fill", "pan")
TILE = 256
MIN_BRUSH, MAX_BRUSH = 1, 400


def clip_box(box: Box, shape: tuple[int, ...]) -> Box | None:
    y0, x0, y1, x1 = box
    y0, x0 = max(0, y0), max(0, x0)
    y1, x1 = min(shape[0], y1), min(shape[1], x1)
    if y0 >= y1 or x0 >= x1:
        return None
    return (y0, x0, y1, x1)


def union_box(a: Box | None, b: Box | None) -> Box | None:
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _offset(diff: MaskDiff, y: int, x: int) -> MaskDiff:
    y0, x0, y1, x1 = diff.box
    return MaskDiff((y0 + y, x0 + x, y1 + y, x1 + x), diff.before, diff.after)


class MaskEditor:
    """One image's editable mask with undo; see the module docstring."""

    def __init__(self, mask: np.ndarray, undo: UndoStack) -> None:
        if mask.ndim != 2:
            raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
        self.mask = np.ascontiguousarray(mask, dtype=np.uint8)
        self.undo_stack = undo
        self.brush_size = 24
        self._stroke_value = 1
        self._last: tuple[int, int] | None = None
        self._saved: dict[tuple[int, int], np.ndarray] = {}
        self._stroke_box: Box | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape  # type: ignore[return-value]

    def set_brush_size(self, size: int) -> int:
        self.brush_size = int(min(MAX_BRUSH, max(MIN_BRUSH, size)))
        return self.brush_size

    # -- strokes ------------------------------------------------------------------------------
    @property
    def stroking(self) -> bool:
        return self._last is not None

    def begin_stroke(self, x: float, y: float, *, erase: bool = False) -> Box | None:
        self._stroke_value = 0 if erase else 1
        self._saved = {}
        self._stroke_box = None
        self._last = (round(x), round(y))
        return self._draw(self._last, self._last)

    def stroke_to(self, x: float, y: float) -> Box | None:
        if self._last is None:
            return None
        point = (round(x), round(y))
        box = self._draw(self._last, point)
        self._last = point
        return box

    def end_stroke(self) -> MaskDiff | None:
        """Close the stroke; the returned diff is already on the undo stack."""
        self._last = None
        box, self._stroke_box = self._stroke_box, None
        if box is None:
            return None
        y0, x0, y1, x1 = box
        after = self.mask[y0:y1, x0:x1]
        before = after.copy()
        for (ty, tx), tile in self._saved.items():
            ty0, tx0 = ty * TILE, tx * TILE
            ty1, tx1 = ty0 + tile.shape[0], tx0 + tile.shape[1]
            iy0, ix0, iy1, ix1 = max(ty0, y0), max(tx0, x0), min(ty1, y1), min(tx1, x1)
            if iy0 < iy1 and ix0 < ix1:
                before[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = tile[
                    iy0 - ty0 : iy1 - ty0, ix0 - tx0 : ix1 - tx0
                ]
        self._saved = {}
        diff = diff_masks(before, after)
        if diff is None:
            return None
        diff = _offset(diff, y0, x0)
        self.undo_stack.push(diff)
        return diff

    def _draw(self, start: tuple[int, int], end: tuple[int, int]) -> Box | None:
        radius = self.brush_size // 2 + 1
        box = clip_box(
            (
                min(start[1], end[1]) - radius,
                min(start[0], end[0]) - radius,
                max(start[1], end[1]) + radius + 1,
                max(start[0], end[0]) + radius + 1,
            ),
            self.mask.shape,
        )
        if box is None:
            return None
        self._backup(box)
        thickness = max(1, self.brush_size)
        if start == end:
            cv2.circle(self.mask, start, max(0, thickness // 2), self._stroke_value, -1)
        else:
            cv2.line(self.mask, start, end, self._stroke_value, thickness, cv2.LINE_8)
        self._stroke_box = union_box(self._stroke_box, box)
        return box

    def _backup(self, box: Box) -> None:
        y0, x0, y1, x1 = box
        for ty in range(y0 // TILE, (y1 - 1) // TILE + 1):
            for tx in range(x0 // TILE, (x1 - 1) // TILE + 1):
                if (ty, tx) not in self._saved:
                    self._saved[(ty, tx)] = self.mask[
                        ty * TILE : (ty + 1) * TILE, tx * TILE : (tx + 1) * TILE
                    ].copy()

    # -- region operations ----------------------------------------------------------------------
    def fill_polygon(
        self, points: Sequence[tuple[float, float]], *, erase: bool = False
    ) -> MaskDiff | None:
        """Fill (or erase) a closed polygon / lasso given in image (x, y) coordinates."""
        if len(points) < 3:
            return None
        pts = np.round(np.asarray(points, dtype=np.float64)).astype(np.int32)
        box = clip_box(
            (
                int(pts[:, 1].min()),
                int(pts[:, 0].min()),
                int(pts[:, 1].max()) + 1,
                int(pts[:, 0].max()) + 1,
            ),
            self.mask.shape,
        )
        if box is None:
            return None
        y0, x0 = box[0], box[1]

        def paint(patch: np.ndarray) -> None:
            cv2.fillPoly(patch, [pts - np.array([x0, y0], dtype=np.int32)], 0 if erase else 1)

        return self._apply(box, paint)

    def flood_fill(
        self, image: np.ndarray, x: float, y: float, *, tolerance: int = 12
    ) -> MaskDiff | None:
        """Add the connected region of similar colour around (x, y) to the mask (magic wand)."""
        h, w = self.mask.shape
        px, py = int(x), int(y)
        if not (0 <= px < w and 0 <= py < h):
            return None
        if image.shape[:2] != (h, w):
            raise ValueError("image and mask sizes differ")
        region = np.zeros((h + 2, w + 2), np.uint8)
        diff = (tolerance,) * 3
        flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
        cv2.floodFill(np.ascontiguousarray(image), region, (px, py), (0, 0, 0), diff, diff, flags)
        filled = region[1:-1, 1:-1]
        rows = np.flatnonzero(filled.any(axis=1))
        cols = np.flatnonzero(filled.any(axis=0))
        box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
        y0, x0, y1, x1 = box

        def paint(patch: np.ndarray) -> None:
            patch |= filled[y0:y1, x0:x1]

        return self._apply(box, paint)

    def replace(self, new_mask: np.ndarray) -> MaskDiff | None:
        """Swap in a whole new mask (from heatmap, clear) as one undoable step."""
        if new_mask.shape != self.mask.shape:
            raise ValueError(f"mask shape {new_mask.shape} != {self.mask.shape}")
        diff = diff_masks(self.mask, new_mask.astype(np.uint8))
        if diff is None:
            return None
        y0, x0, y1, x1 = diff.box
        self.mask[y0:y1, x0:x1] = diff.after
        self.undo_stack.push(diff)
        return diff

    def clear(self) -> MaskDiff | None:
        return self.replace(np.zeros_like(self.mask))

    def _apply(self, box: Box, paint: Callable[[np.ndarray], None]) -> MaskDiff | None:
        y0, x0, y1, x1 = box
        patch = self.mask[y0:y1, x0:x1]
        before = patch.copy()
        paint(patch)
        diff = diff_masks(before, patch)
        if diff is None:
            return None
        diff = _offset(diff, y0, x0)
        self.undo_stack.push(diff)
        return diff

    # -- history ---------------------------------------------------------------------------------
    def undo(self) -> Box | None:
        return self.undo_stack.undo(self.mask)

    def redo(self) -> Box | None:
        return self.undo_stack.redo(self.mask)
