"""Mask editing and diff-based undo, without a display."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.core.mask_tools import MaskEditor
from workstation.core.undo import UndoHistory, UndoStack, diff_masks


def editor(shape=(96, 128), depth=250) -> MaskEditor:
    return MaskEditor(np.zeros(shape, np.uint8), UndoStack(depth))


def test_stroke_undo_redo_round_trip() -> None:
    ed = editor()
    ed.brush_size = 6
    ed.begin_stroke(10, 10)
    ed.stroke_to(60, 40)
    diff = ed.end_stroke()
    assert diff is not None and ed.mask.sum() > 0
    painted = ed.mask.copy()
    y0, x0, y1, x1 = diff.box
    assert diff.before.shape == (y1 - y0, x1 - x0)
    assert not diff.before.any() and np.array_equal(diff.after, painted[y0:y1, x0:x1])
    assert ed.undo() == diff.box and not ed.mask.any()
    assert ed.redo() == diff.box and np.array_equal(ed.mask, painted)


def test_eraser_stroke_records_only_what_changed() -> None:
    ed = editor()
    ed.mask[20:40, 20:40] = 1
    start = ed.mask.copy()
    ed.brush_size = 4
    ed.begin_stroke(30, 30, erase=True)
    diff = ed.end_stroke()
    assert diff is not None and ed.mask.sum() < start.sum()
    ed.undo()
    assert np.array_equal(ed.mask, start)


def test_stroke_across_tiles_restores_exactly() -> None:
    ed = MaskEditor(np.zeros((600, 600), np.uint8), UndoStack())
    ed.mask[::7, ::5] = 1  # a pattern the backup must bring back bit for bit
    start = ed.mask.copy()
    ed.brush_size = 30
    ed.begin_stroke(5, 5)
    ed.stroke_to(590, 580)
    ed.stroke_to(10, 590)
    ed.end_stroke()
    ed.undo()
    assert np.array_equal(ed.mask, start)


def test_empty_stroke_off_image_adds_no_step() -> None:
    ed = editor()
    ed.begin_stroke(-500, -500)
    assert ed.end_stroke() is None
    assert len(ed.undo_stack) == 0


def test_polygon_flood_fill_replace_clear_are_undoable() -> None:
    ed = editor()
    assert ed.fill_polygon([(10, 10), (50, 10), (50, 50)]) is not None
    after_poly = ed.mask.copy()
    image = np.zeros((96, 128, 3), np.uint8)
    image[60:80, 80:120] = 200
    ed.flood_fill(image, 90, 70)
    assert ed.mask[60:80, 80:120].all() and ed.mask[85:, :].sum() == 0
    ed.clear()
    assert not ed.mask.any()
    ed.undo()
    ed.undo()
    assert np.array_equal(ed.mask, after_poly)
    assert ed.fill_polygon([(1, 1), (2, 2)]) is None  # fewer than three points


def test_at_least_200_steps_and_redo_cleared_by_new_edit() -> None:
    ed = editor(depth=250)
    for i in range(220):
        ed.begin_stroke(40, 40, erase=bool(i % 2))  # paint, erase, paint: every step changes
        assert ed.end_stroke() is not None
    undone = 0
    while ed.undo() is not None:
        undone += 1
    assert undone >= 200
    ed.redo()
    ed.begin_stroke(5, 5)
    ed.end_stroke()
    assert not ed.undo_stack.can_redo


def test_history_keeps_one_stack_per_image() -> None:
    history = UndoHistory(depth=5, max_images=2)
    a = history.stack(1)
    assert history.stack(1) is a
    history.stack(2)
    history.stack(3)
    assert history.stack(1) is not a  # evicted as least recently used


def test_diff_masks_and_bad_input() -> None:
    a = np.zeros((4, 4), np.uint8)
    assert diff_masks(a, a.copy()) is None
    with pytest.raises(ValueError):
        MaskEditor(np.zeros((2, 2, 3), np.uint8), UndoStack())
    with pytest.raises(ValueError):
        UndoStack(0)
    with pytest.raises(ValueError):
        editor().replace(np.zeros((3, 3), np.uint8))
