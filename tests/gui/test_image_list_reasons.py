"""The review list says why the queue put an unreviewed image where it is."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.gui.conftest import wait_idle
from workstation.active.queue import refresh_queue
from workstation.active.strategies import REASONS
from workstation.core.types import ImageRecord
from workstation.gui.image_list import ImageListModel
from workstation.services.review import QueueFilter
from workstation.store.rows import ImageRow

REVIEW = 3


class Rows:
    def __init__(self, rows: list[ImageRow]) -> None:
        self._rows = rows

    def count(self, flt: QueueFilter) -> int:
        return len(self._rows)

    def rows(self, flt: QueueFilter, *, offset: int, limit: int) -> list[ImageRow]:
        return self._rows[offset : offset + limit]


def row(image_id: int, verdict: str | None, reason: str | None) -> ImageRow:
    image = ImageRecord(image_id, 1, f"/parts/{image_id}.png", "0" * 64, 8, 8, "test", None)
    return ImageRow(image, 1.2, True, verdict, None, 0.5 if reason else None, reason)


def test_unreviewed_rows_show_their_reason_reviewed_rows_their_verdict(qtbot) -> None:  # type: ignore[no-untyped-def]
    model = ImageListModel()
    model.set_source(
        Rows(
            [
                row(1, None, "experts disagree"),
                row(2, "normal", "experts disagree"),  # reviewed since: the verdict counts
                row(3, None, None),
                row(4, "skipped", "near threshold"),
            ]
        )
    )
    texts = [model.data(model.index(r, REVIEW)) for r in range(4)]
    assert texts == ["experts disagree", "normal", "unreviewed", "skipped"]
    tip = model.data(model.index(0, REVIEW), Qt.ItemDataRole.ToolTipRole)
    assert "experts disagree" in tip and "unreviewed" in tip.lower()
    assert model.data(model.index(2, REVIEW), Qt.ItemDataRole.ToolTipRole) is None


def test_window_list_shows_the_queue_reasons_at_laptop_size(qtbot, window, screenshot) -> None:  # type: ignore[no-untyped-def]
    ws = window.ws
    wait_idle(qtbot, ws)
    # the window opened before the product had a queue, so it listed by score
    queue = refresh_queue(ws.store, "widget")  # the default order, as triage writes it
    window.controller.scores_changed()  # what the end of an inspection calls
    window.image_list.unreviewed.setChecked(True)  # as the inspector filters the list
    qtbot.waitUntil(lambda: window.list_model.rowCount() == len(ws.store.query_images(
        ws.store.get_product("widget").id, review_state="unreviewed")), timeout=10000)
    window.resize(1100, 770)
    model = window.list_model
    shown = {model.data(model.index(r, REVIEW)) for r in range(model.rowCount())}
    listed = [model.data(model.index(r, 0), Qt.ItemDataRole.UserRole)
              for r in range(model.rowCount())]
    queued = sorted(queue.priorities, key=lambda i: -queue.priorities[i])
    assert listed[: len(queued)] == queued  # review order, not score order
    assert set(queue.reasons.values()) <= shown <= set(REASONS.values()) | {"unreviewed"}
    screenshot(window, "review_list_reasons_1100x770")
