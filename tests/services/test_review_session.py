"""The review session without widgets: navigation, read-ahead, cache, undo, write counting."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workstation.services import review_session
from workstation.services.review_session import ReviewSession, Shown


@dataclass(frozen=True)
class Image:
    image_id: int
    mask: np.ndarray = field(default_factory=lambda: np.zeros((8, 8), np.uint8))


class Rows:
    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def count(self) -> int:
        return len(self.ids)

    def image_id(self, row: int) -> int | None:
        return self.ids[row] if 0 <= row < len(self.ids) else None


class Recorder:
    """The GUI's side: what the session asked for, in order."""

    def __init__(self, session: ReviewSession[Image]) -> None:
        self.loads: list[tuple[int, bool]] = []
        self.shown: list[Shown[Image]] = []
        self.messages: list[str] = []
        self.boxes: list[object] = []
        self.cancels = 0
        session.load.connect(lambda image_id, view: self.loads.append((image_id, view)))
        session.shown.connect(self.shown.append)
        session.message.connect(self.messages.append)
        session.mask_changed.connect(self.boxes.append)
        session.cancel_view.connect(self._cancel)

    def _cancel(self) -> None:
        self.cancels += 1


def _session(ids: list[int]) -> tuple[ReviewSession[Image], Recorder]:
    session: ReviewSession[Image] = ReviewSession(Rows(ids))
    return session, Recorder(session)


def test_selecting_reads_the_image_and_its_neighbours_ahead() -> None:
    session, seen = _session([10, 11, 12, 13, 14])
    assert session.select(1) == 11
    # the shown one first, then two ahead and one behind
    assert seen.loads == [(11, True), (12, False), (13, False), (10, False)]
    session.loaded(Image(11), view=True)
    assert [s.loaded.image_id for s in seen.shown] == [11]
    assert seen.shown[0].keep_view is False and seen.shown[0].fresh_editor is True


def test_a_row_read_ahead_shows_at_once_and_is_not_read_twice() -> None:
    session, seen = _session([10, 11, 12, 13])
    session.select(0)
    session.loaded(Image(10), view=True)
    session.loaded(Image(11), view=False)
    seen.loads.clear()
    session.select(1)
    assert seen.cancels == 1 and seen.shown[-1].loaded.image_id == 11
    assert seen.shown[-1].keep_view is True
    assert (11, True) not in seen.loads and (12, False) not in seen.loads  # 12 still in flight
    assert (13, False) in seen.loads


def test_selection_is_clamped_and_an_empty_list_shows_nothing() -> None:
    session, _ = _session([10, 11])
    assert session.select(99) == 11 and session.current_row == 1
    assert session.select(-5) == 10 and session.current_row == 0
    empty, nothing = _session([])
    assert empty.select(0) is None and nothing.loads == []


def test_a_late_read_of_an_image_the_inspector_left_is_kept_but_not_shown() -> None:
    session, seen = _session([10, 11, 12])
    session.select(0)
    session.select(2)
    session.loaded(Image(10), view=True)  # arrives after the move
    assert seen.shown == []
    seen.loads.clear()
    session.select(0)  # now cached
    assert seen.shown[-1].loaded.image_id == 10 and (10, True) not in seen.loads


def test_the_cache_keeps_the_most_recent_reads_only() -> None:
    ids = list(range(100, 100 + review_session.CACHE_SIZE + 3))
    session, seen = _session(ids)
    for image_id in ids:
        session.loaded(Image(image_id), view=False)
    seen.loads.clear()
    session.select(0)  # the oldest reads were dropped: read again
    assert seen.loads[0] == (100, True)
    seen.loads.clear()
    session.select(len(ids) - 1)
    assert (ids[-1], True) not in seen.loads


def test_writes_are_counted_and_make_the_cached_read_stale() -> None:
    session, seen = _session([10, 11])
    session.loaded(Image(10), view=False)
    session.write_started(10)
    assert session.writes_pending == 1
    session.select(0)
    assert seen.loads[0] == (10, True)  # not the stale copy
    session.loaded(Image(10), view=True)
    session.write_ended(10)
    assert session.writes_pending == 0
    seen.loads.clear()
    session.select(0)
    assert seen.loads[0] == (10, True)  # a read from before the write landed is dropped too


def test_undo_and_redo_of_the_shown_mask_and_their_limits() -> None:
    session, seen = _session([10, 11])
    session.undo()  # nothing shown: nothing happens
    assert seen.messages == []
    session.select(0)
    session.loaded(Image(10), view=True)
    editor = seen.shown[-1].editor
    session.undo()
    assert seen.messages == ["nothing to undo"]
    editor.replace(np.ones((8, 8), np.uint8))
    session.undo()
    assert seen.boxes and not editor.mask.any()
    session.redo()
    assert editor.mask.all() and len(seen.boxes) == 2
    session.redo()
    assert seen.messages[-1] == "nothing to redo"


def test_an_images_editor_and_its_undo_come_back_with_it_and_the_brush_carries_over() -> None:
    session, seen = _session([10, 11])
    session.select(0)
    session.loaded(Image(10), view=True)
    first = seen.shown[-1].editor
    first.set_brush_size(31)
    first.replace(np.ones((8, 8), np.uint8))
    session.select(1)
    session.loaded(Image(11), view=True)
    assert seen.shown[-1].editor.brush_size == 31 and seen.shown[-1].fresh_editor
    session.select(0)
    again = seen.shown[-1]
    assert again.editor is first and not again.fresh_editor
    session.undo()
    assert not first.mask.any()


def test_reset_forgets_everything_of_the_last_product() -> None:
    session, seen = _session([10, 11])
    session.select(0)
    session.loaded(Image(10), view=True)
    session.reset()
    assert session.current is None and session.current_row == -1 and session.editor is None
    seen.loads.clear()
    session.select(0)
    assert seen.loads[0] == (10, True)
    session.loaded(Image(10), view=True)
    assert seen.shown[-1].fresh_editor and seen.shown[-1].keep_view is False
