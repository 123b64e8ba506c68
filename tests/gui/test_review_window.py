"""The review window on a generated store: keyboard flow, mask edits, text, relaunch."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence

from tests.gui.conftest import wait_idle
from workstation.services.review import QueueFilter


def press(qtbot, window, key: str) -> None:  # type: ignore[no-untyped-def]
    combo = QKeySequence(key)[0]
    qtbot.keyClick(window.canvas, combo.key(), combo.keyboardModifiers())


def shown_id(window) -> int:  # type: ignore[no-untyped-def]
    return window.controller.current.content.image_id


def drag(qtbot, canvas, points) -> None:  # type: ignore[no-untyped-def]
    """Press, move and release the left button along image-coordinate points."""
    view = [canvas.mapFromScene(x, y) for x, y in points]
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=view[0])
    for p in view[1:]:
        qtbot.mouseMove(canvas.viewport(), p)
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=view[-1])


def test_window_opens_on_demo_store(qtbot, window, screenshot) -> None:  # type: ignore[no-untyped-def]
    wait_idle(qtbot, window.ws)
    assert window.list_model.rowCount() == 12
    assert window.canvas.content is not None and window.canvas.content.heatmap is not None
    assert window.product_label.text() == "Product: widget"
    assert window.progress_label.text() == "0 / 12 reviewed"
    qtbot.waitUntil(lambda: "…" not in window.device_label.text(), timeout=30000)
    assert window.device_label.text() in ("device: CPU",) or "device:" in window.device_label.text()
    screenshot(window, "review_window")


def test_keyboard_review_flow_writes_the_right_revisions(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    store = window.ws.store
    first = shown_id(window)
    assert window.canvas.editor.mask.sum() == 0
    press(qtbot, window, "X")  # mask from heatmap at threshold: the defect becomes the mask
    press(qtbot, window, "A")  # accept -> next image
    qtbot.waitUntil(lambda: shown_id(window) != first)
    second = shown_id(window)
    press(qtbot, window, "N")  # false alarm
    qtbot.waitUntil(lambda: shown_id(window) != second)
    third = shown_id(window)
    press(qtbot, window, "D")  # anomalous
    qtbot.waitUntil(lambda: shown_id(window) != third)
    fourth = shown_id(window)
    press(qtbot, window, "S")
    qtbot.waitUntil(lambda: shown_id(window) != fourth)
    press(qtbot, window, "K")
    qtbot.waitUntil(lambda: shown_id(window) == fourth)
    wait_idle(qtbot, window.ws)

    assert store.latest_review(first).verdict == "accepted"
    mask = store.latest_mask_revision(first)
    assert mask.source == "inspector" and store.load_mask(mask).sum() > 0
    assert store.latest_review(second).verdict == "normal"
    normal_text = store.latest_explanation(second)
    assert normal_text.source == "inspector" and normal_text.explanation.verdict == "normal"
    assert normal_text.parent_id is not None  # corrects the template draft
    assert store.latest_review(third).verdict == "anomalous"
    assert store.latest_review(fourth).verdict == "skipped"
    assert window.progress_label.text() == "3 / 12 reviewed"
    assert window.list_model.row_at(0).review_verdict == "accepted"


def test_brush_stroke_undo_redo_round_trip(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    store = window.ws.store
    image_id = shown_id(window)
    canvas = window.canvas
    press(qtbot, window, "B")
    drag(qtbot, canvas, [(20, 20), (40, 30), (60, 40)])
    wait_idle(qtbot, window.ws)
    painted = store.latest_mask_revision(image_id)
    assert painted.source == "inspector" and store.load_mask(painted).sum() > 0
    assert np.array_equal(store.load_mask(painted), canvas.editor.mask)

    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot, window.ws)
    undone = store.latest_mask_revision(image_id)
    assert undone.parent_id == painted.id and store.load_mask(undone).sum() == 0

    qtbot.keyClick(
        canvas,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    wait_idle(qtbot, window.ws)
    redone = store.latest_mask_revision(image_id)
    assert redone.parent_id == undone.id
    assert np.array_equal(store.load_mask(redone), store.load_mask(painted))
    history = store.mask_history(image_id)
    assert [r.source for r in history][-3:] == ["inspector"] * 3


def test_other_mask_tools_commit(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    store, canvas = window.ws.store, window.canvas
    image_id = shown_id(window)
    press(qtbot, window, "P")
    for x, y in [(10, 10), (50, 10), (50, 50)]:
        qtbot.mouseClick(
            canvas.viewport(), Qt.MouseButton.LeftButton, pos=canvas.mapFromScene(x, y)
        )
    qtbot.keyClick(canvas, Qt.Key.Key_Return)
    wait_idle(qtbot, window.ws)
    assert store.load_mask(store.latest_mask_revision(image_id))[20, 40] == 1
    press(qtbot, window, "Shift+Del")
    wait_idle(qtbot, window.ws)
    assert store.load_mask(store.latest_mask_revision(image_id)).sum() == 0
    before = canvas.editor.brush_size
    press(qtbot, window, "]")
    assert canvas.editor.brush_size > before
    press(qtbot, window, "[")
    assert canvas.editor.brush_size == before


def test_text_edit_is_saved_debounced_and_on_leave(qtbot, window, screenshot) -> None:  # type: ignore[no-untyped-def]
    store, panel = window.ws.store, window.explanation
    image_id = shown_id(window)
    press(qtbot, window, "T")  # keyboard only: T jumps into the text, caret at the end
    assert panel.description.hasFocus()
    qtbot.keyClicks(panel.description, " Also a dent")
    assert panel.pending
    qtbot.waitUntil(lambda: not panel.pending, timeout=2000)  # debounce <= 1 s
    wait_idle(qtbot, window.ws)
    saved = store.latest_explanation(image_id)
    assert saved.source == "inspector" and saved.explanation.description.endswith("Also a dent")
    assert saved.explanation.verdict == "anomalous"  # the draft's fields were kept
    screenshot(window, "review_text_edit")
    # typing then leaving at once still saves (flush before the switch)
    panel.description.setPlainText("changed right before leaving")
    window.controller.next()
    wait_idle(qtbot, window.ws)
    assert (
        store.latest_explanation(image_id).explanation.description == "changed right before leaving"
    )


def test_filters_and_relaunch_restore(qtbot, workstation, window) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.main_window import MainWindow

    window.image_list.prediction.setCurrentIndex(1)  # predicted anomalous
    assert window.list_model.rowCount() == 3
    window.image_list.prediction.setCurrentIndex(0)
    window.controller.select_row(4)
    qtbot.waitUntil(
        lambda: (
            window.controller.current_row == 4
            and shown_id(window) == window.list_model.row_at(4).image.id
        )
    )
    chosen = shown_id(window)
    window.canvas.set_zoom(3.0)
    window.canvas.view_changed.emit()
    window.close()
    again = MainWindow(workstation)
    qtbot.addWidget(again)
    again.show()
    qtbot.waitUntil(lambda: again.controller.current is not None)
    assert shown_id(again) == chosen
    assert abs(again.canvas.zoom() - 3.0) < 1e-6
    again.close()


def test_bad_score_range_is_reported_not_applied(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    messages: list[str] = []
    window.image_list.filter_error.connect(messages.append)
    window.image_list.score_max.setValue(0.5)
    window.image_list.score_min.setValue(0.9)
    assert messages and "empty" in messages[-1]
    assert window.list_model.filter == QueueFilter(score_max=0.5)


def test_cheat_sheet_lists_rebindable_keys(qtbot, window, screenshot) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.cheat_sheet import CheatSheet

    sheet = CheatSheet(window.bindings, window)
    qtbot.addWidget(sheet)
    sheet.show()
    text = sheet.findChild(type(window.product_label)).text()
    assert "Accept" in text and "<b>A</b>" in text
    screenshot(sheet, "cheat_sheet")
    sheet.close()


def test_redraft_runs_the_explainer_on_the_model_lane(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    store = window.ws.store
    image_id = shown_id(window)
    before = len(store.explanation_history(image_id))
    press(qtbot, window, "W")
    assert window.explanation.draft_source.text() == "Source: writing…"
    qtbot.waitUntil(lambda: len(store.explanation_history(image_id)) == before + 1, timeout=30000)
    wait_idle(qtbot, window.ws)
    latest = store.latest_explanation(image_id)
    assert latest.source == "template"
    assert window.explanation.draft_source.text().startswith("Source: template")
    assert window.explanation.draft_text.toPlainText() == latest.explanation.description
