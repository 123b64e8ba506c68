"""The review window's state and decisions without widgets (a model in napari's sense).

What the inspector is looking at (row, image, its mask editor and undo history), what to
read ahead, what the read-ahead cache may keep and how many writes are still on their way
to the store live here; the GUI's :class:`~workstation.gui.review_controller.ReviewController`
does the reading and writing on its lanes and draws what this model's events say. So the
navigation, read-ahead and undo logic is tested without Qt (``tests/services``).

Events are plain callbacks (:class:`Event`): ``load`` (read this image; ``view`` when it is
the one to show), ``cancel_view`` (a cached image made a pending read of the shown one
moot), ``shown`` (show this loaded image with this editor), ``mask_changed`` (undo or
redo changed this box of the shown mask) and ``message`` (one line for the status bar).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from workstation.core.mask_tools import MaskEditor
from workstation.core.undo import UndoHistory

PREFETCH_AHEAD, PREFETCH_BEHIND, CACHE_SIZE = 2, 1, 8
EDITORS_KEPT = CACHE_SIZE * 4
"""Mask editors (with their undo stacks) kept for images looked at recently."""


class Loaded(Protocol):
    """What the GUI read for one image: its id and its stored mask."""

    @property
    def image_id(self) -> int: ...

    @property
    def mask(self) -> np.ndarray: ...


class Rows(Protocol):
    """The filtered, ordered list the inspector moves through."""

    def count(self) -> int: ...

    def image_id(self, row: int) -> int | None:
        """The image at ``row``, or None when it is not (yet) known."""
        ...


L = TypeVar("L", bound=Loaded)


class Event:
    """Callbacks called in connection order with the event's arguments."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.append(callback)

    def emit(self, *args: Any) -> None:
        for callback in self._callbacks:
            callback(*args)


@dataclass(frozen=True)
class Shown(Generic[L]):
    loaded: L
    editor: MaskEditor
    keep_view: bool
    """False for the first image of a product: the view fits it instead of keeping zoom."""
    fresh_editor: bool
    """The editor was made from the stored mask just now (the canvas prepares it)."""


class ReviewSession(Generic[L]):
    """See the module docstring."""

    def __init__(self, rows: Rows, *, undo_depth: int = 250) -> None:
        self.rows = rows
        self.current_row = -1
        self.current: L | None = None
        self.writes_pending = 0
        self._cache: OrderedDict[int, L] = OrderedDict()
        self._inflight: set[int] = set()
        self._editors: OrderedDict[int, MaskEditor] = OrderedDict()
        self._history = UndoHistory(depth=undo_depth)
        self.load = Event()
        self.cancel_view = Event()
        self.shown = Event()
        self.mask_changed = Event()
        self.message = Event()

    # -- navigation and read-ahead ----------------------------------------------------------
    def reset(self) -> None:
        """Another product: nothing cached, nothing shown, no editors."""
        self._cache.clear()
        self._editors.clear()
        self.current, self.current_row = None, -1

    def select(self, row: int) -> int | None:
        """Go to ``row`` (clamped to the list); returns the image id, None when there is
        nothing to show. A cached image is shown at once, else read; neighbours are read
        ahead either way."""
        count = self.rows.count()
        if count == 0:
            return None
        row = max(0, min(count - 1, row))
        image_id = self.rows.image_id(row)
        if image_id is None:
            return None
        self.current_row = row
        cached = self._cache.get(image_id)
        if cached is not None:
            self._cache.move_to_end(image_id)
            self.cancel_view.emit()
            self.offer(cached)
        else:
            self.load.emit(image_id, True)
        self._prefetch(row)
        return image_id

    def _prefetch(self, row: int) -> None:
        ahead = range(1, PREFETCH_AHEAD + 1)
        behind = (-i for i in range(1, PREFETCH_BEHIND + 1))
        for offset in (*ahead, *behind):
            image_id = self.rows.image_id(row + offset) if row + offset >= 0 else None
            if image_id is None or image_id in self._cache or image_id in self._inflight:
                continue
            self._inflight.add(image_id)
            self.load.emit(image_id, False)

    def loaded(self, loaded: L, *, view: bool) -> None:
        """A read finished: keep it, and show it when it was the one asked for."""
        self._inflight.discard(loaded.image_id)
        self._cache[loaded.image_id] = loaded
        self._cache.move_to_end(loaded.image_id)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        if view:
            self.offer(loaded)

    def load_failed(self, image_id: int) -> None:
        self._inflight.discard(image_id)

    def offer(self, loaded: L) -> bool:
        """Show ``loaded`` unless the inspector already moved on to another row."""
        if self.rows.image_id(self.current_row) != loaded.image_id:
            return False
        previous = self.editor
        keep = self.current is not None
        self.current = loaded
        fresh = loaded.image_id not in self._editors
        editor = self._editor(loaded, previous)
        self.shown.emit(Shown(loaded, editor, keep_view=keep, fresh_editor=fresh))
        return True

    def forget(self, image_id: int) -> None:
        """The image changed in the store: its cached read is stale."""
        self._cache.pop(image_id, None)

    def forget_all(self) -> None:
        self._cache.clear()

    # -- undo ---------------------------------------------------------------------------------
    def _editor(self, loaded: L, previous: MaskEditor | None) -> MaskEditor:
        """The image's editor, kept with its undo stack while it is among the recent ones;
        a new one takes the brush of the editor shown before it."""
        image_id = loaded.image_id
        editor = self._editors.pop(image_id, None)
        if editor is None:
            editor = MaskEditor(loaded.mask.copy(), self._history.stack(image_id))
            if previous is not None:
                editor.set_brush_size(previous.brush_size)
        self._editors[image_id] = editor
        while len(self._editors) > EDITORS_KEPT:
            self._editors.popitem(last=False)
        return editor

    @property
    def editor(self) -> MaskEditor | None:
        """The shown image's editor."""
        return None if self.current is None else self._editors.get(self.current.image_id)

    def undo(self) -> None:
        self._history_step(redo=False)

    def redo(self) -> None:
        self._history_step(redo=True)

    def _history_step(self, *, redo: bool) -> None:
        editor = self.editor
        if editor is None:
            return
        box = editor.redo() if redo else editor.undo()
        if box is None:
            self.message.emit("nothing to redo" if redo else "nothing to undo")
            return
        self.mask_changed.emit(box)

    # -- write ordering -----------------------------------------------------------------------
    def write_started(self, image_id: int) -> None:
        """A write of the image is queued: its cached read no longer matches the store."""
        self.writes_pending += 1
        self._cache.pop(image_id, None)

    def write_ended(self, image_id: int) -> None:
        """The write reached the store or failed; either way a read must come anew."""
        self.writes_pending -= 1
        self._cache.pop(image_id, None)
