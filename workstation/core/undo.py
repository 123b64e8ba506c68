"""Diff-based undo for masks: each step keeps only the changed box, before and after.

A brush stroke on an 8000 x 8000 mask touches a few thousand pixels; keeping whole-mask
copies would hold gigabytes after 200 steps, so a step stores the bounding box of what
changed plus the two patches. Stacks are per image and bounded (oldest steps fall off).
No Qt here: the stack is plain numpy so it is tested without a display.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]
"""(y0, x0, y1, x1), half-open, in mask pixels."""


@dataclass(frozen=True)
class MaskDiff:
    box: Box
    before: np.ndarray
    after: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.after.nbytes


def diff_masks(before: np.ndarray, after: np.ndarray) -> MaskDiff | None:
    """The smallest box holding every changed pixel, or None when nothing changed."""
    changed = before != after
    if not changed.any():
        return None
    rows = np.flatnonzero(changed.any(axis=1))
    cols = np.flatnonzero(changed.any(axis=0))
    box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    y0, x0, y1, x1 = box
    return MaskDiff(box, before[y0:y1, x0:x1].copy(), after[y0:y1, x0:x1].copy())


class UndoStack:
    """Undo / redo of :class:`MaskDiff` steps applied to one mask array in place."""

    def __init__(self, depth: int = 250) -> None:
        if depth < 1:
            raise ValueError("undo depth must be at least 1")
        self._undo: deque[MaskDiff] = deque(maxlen=depth)
        self._redo: list[MaskDiff] = []

    def push(self, diff: MaskDiff) -> None:
        self._undo.append(diff)
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def __len__(self) -> int:
        return len(self._undo)

    def undo(self, mask: np.ndarray) -> Box | None:
        if not self._undo:
            return None
        diff = self._undo.pop()
        y0, x0, y1, x1 = diff.box
        mask[y0:y1, x0:x1] = diff.before
        self._redo.append(diff)
        return diff.box

    def redo(self, mask: np.ndarray) -> Box | None:
        if not self._redo:
            return None
        diff = self._redo.pop()
        y0, x0, y1, x1 = diff.box
        mask[y0:y1, x0:x1] = diff.after
        self._undo.append(diff)
        return diff.box


class UndoHistory:
    """One bounded :class:`UndoStack` per image, so moving between images keeps each history."""

    def __init__(self, depth: int = 250, max_images: int = 64) -> None:
        self._depth = depth
        self._max_images = max_images
        self._stacks: dict[int, UndoStack] = {}

    def stack(self, image_id: int) -> UndoStack:
        stack = self._stacks.pop(image_id, None)
        if stack is None:
            stack = UndoStack(self._depth)
        self._stacks[image_id] = stack  # most recently used last
        while len(self._stacks) > self._max_images:
            del self._stacks[next(iter(self._stacks))]
        return stack
