"""Glue between the review widgets and :class:`~workstation.services.review.ReviewService`.

Reads and writes both go through the io lane, one job at a time and in order, so an image
loaded after an edit always sees that edit, and a verdict queued behind a stroke lands after
it. Loads of the current image use the ``view`` channel (a newer one supersedes an older
one); the neighbours are read ahead into a small cache so J / K shows them at once.

What to show, read ahead, keep and undo is decided by the Qt-free
:class:`~workstation.services.review_session.ReviewSession`; this class does the reading
and writing its events ask for and draws the result. The model-lane jobs (inspection,
redrafting) are :class:`~workstation.gui.review_jobs.ReviewModelJobs`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from workstation.config import ExplainerSettings
from workstation.core.errors import CancelledError, UserError
from workstation.core.types import CALIBRATED_NORMAL_LEVEL, Explanation, Product, ReviewVerdict
from workstation.faults import user_message
from workstation.gui.canvas import Canvas
from workstation.gui.canvas_content import CanvasContent, prepare_overlays
from workstation.gui.explanation_panel import ExplanationPanel
from workstation.gui.image_list import ImageListModel
from workstation.gui.render import image_tiles, overview_factor, overview_qimage, reduce_heatmap
from workstation.gui.review_jobs import ReviewModelJobs
from workstation.gui.tiled_view import large_raster
from workstation.gui.workers import CancelToken, Lane, ProgressFn, unload_models
from workstation.gui.zoom_view import ReferenceView
from workstation.model_cache import ModelCache
from workstation.services.review import ImageDetail, QueueFilter, ReviewService
from workstation.services.review_session import ReviewSession, Shown

PRODUCT_KEY = "gui.product"
RESTORE_SCAN_PAGES = 40
REFERENCE_MAX_SIDE = 4096


@dataclass(frozen=True)
class LoadedImage:
    detail: ImageDetail
    content: CanvasContent

    @property
    def image_id(self) -> int:
        return self.content.image_id

    @property
    def mask(self) -> np.ndarray:
        return self.detail.mask


def load_image(service: ReviewService, image_id: int, colormap: str) -> LoadedImage:
    """Everything to show one image, prepared off the GUI thread (runs on the io lane)."""
    from workstation.core.imageio import read_image

    detail = service.detail(image_id)
    raster = large_raster(detail.record, service.store.path)
    rgb = raster.levels[0] if raster is not None else read_image(detail.record.path)
    if rgb.shape[:2] != detail.mask.shape:
        raise UserError(
            f"{detail.record.name} is now {rgb.shape[1]}x{rgb.shape[0]} pixels but was imported "
            f"as {detail.record.width}x{detail.record.height}; the file changed on disk"
        )
    heat = None
    if detail.anomaly_map is not None:
        # calibrated scores put a typical normal at a fixed level: the colours mean the
        # same score on every image of the product
        normal = CALIBRATED_NORMAL_LEVEL if detail.threshold is not None else None
        heat = reduce_heatmap(detail.anomaly_map, detail.threshold, rgb.shape[1], normal)
    overlays = prepare_overlays(heat, detail.mask, colormap)
    if raster is not None:
        return LoadedImage(detail, CanvasContent(image_id, rgb, [], heat, overlays, raster=raster))
    factor = overview_factor(rgb.shape[1], rgb.shape[0])
    content = CanvasContent(
        image_id,
        rgb,
        image_tiles(rgb),
        heat,
        overlays,
        overview=overview_qimage(rgb, factor),
        overview_factor=factor,
    )
    return LoadedImage(detail, content)


class ListRows:
    """The image list as the session's :class:`~workstation.services.review_session.Rows`."""

    def __init__(self, model: ImageListModel) -> None:
        self.model = model

    def count(self) -> int:
        return int(self.model.rowCount())

    def image_id(self, row: int) -> int | None:
        entry = self.model.row_at(row)
        return None if entry is None else entry.image.id


class ReviewController(QObject):
    """See the module docstring."""

    image_shown = Signal(int)
    committed = Signal(str, int)
    """(what, image id) after a write reached the store: "mask", "text", "review"."""
    progress_changed = Signal(int, int)
    message = Signal(str)
    fault = Signal(str)
    """A write or an inspection hit a storage fault: one line, for a dialog."""

    def __init__(
        self,
        *,
        io_lane: Lane,
        model_lane: Lane,
        models: ModelCache,
        explainer_settings: Callable[[], ExplainerSettings],
        canvas: Canvas,
        reference: ReferenceView,
        panel: ExplanationPanel,
        model: ImageListModel,
        undo_depth: int = 250,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.io = io_lane
        self.model_lane = model_lane
        self.models = models
        """Holds the loaded explainer; touched only inside model-lane jobs."""
        self.canvas = canvas
        self.reference = reference
        self.panel = panel
        self.model = model
        self.service: ReviewService | None = None
        self.session: ReviewSession[LoadedImage] = ReviewSession(
            ListRows(model), undo_depth=undo_depth
        )
        self.session.load.connect(self._request)
        self.session.cancel_view.connect(lambda: self.io.cancel("view"))
        self.session.shown.connect(self._show)
        self.session.mask_changed.connect(self._undone)
        self.session.message.connect(self.message.emit)
        self.jobs = ReviewModelJobs(self, explainer_settings)
        # the window's actions call these on the controller; they run on the model lane
        self.inspect_new = self.jobs.inspect_new
        self.redraft = self.jobs.redraft
        self._pending_view: dict[str, float] | None = None
        self._shut_down = False
        self._view_timer = QTimer(self)
        self._view_timer.setSingleShot(True)
        self._view_timer.setInterval(400)
        self._view_timer.timeout.connect(self._save_view)
        canvas.mask_edited.connect(self._on_mask_edited)
        canvas.view_changed.connect(self._on_view_changed)
        panel.edited.connect(self._on_text_edited)

    @property
    def current(self) -> LoadedImage | None:
        return self.session.current

    @property
    def current_row(self) -> int:
        return self.session.current_row

    @property
    def writes_pending(self) -> int:
        return self.session.writes_pending

    def report_failure(self, what: str, exc: BaseException) -> str:
        """A person's mistake goes to the status bar; a storage fault or a bug gets the
        dialog (the lane logged the trace). Returns the line."""
        store = self.service.store.path if self.service is not None else None
        line = f"{what}: {user_message(exc, store=store, logged=True)[0]}"
        if isinstance(exc, UserError):
            self.message.emit(line)
        else:
            self.fault.emit(line)
        return line

    # -- product ---------------------------------------------------------------------------
    def open_product(self, service: ReviewService) -> None:
        self.panel.flush()
        if self.service is not None and self.service.product.id != service.product.id:
            unload_models(self.model_lane, self.models)
        self.service = service
        self.session.reset()
        self.canvas.clear()
        self.panel.clear()
        store = service.store
        store.set_state(PRODUCT_KEY, service.product.name)
        flt = self._saved_filter()
        self.model.set_source(service, flt)
        self._load_reference()
        self._refresh_progress()
        saved = store.get_state(self._key("image"))
        view = store.get_state(self._key("view"))
        self._pending_view = json.loads(view) if view else None
        row = self._find_row(int(saved)) if saved and saved.isdigit() else None
        self.select_row(row if row is not None else 0)

    @property
    def product(self) -> Product | None:
        return self.service.product if self.service else None

    def _key(self, what: str) -> str:
        assert self.service is not None
        return f"gui.{what}.{self.service.product.id}"

    def _saved_filter(self) -> QueueFilter:
        assert self.service is not None
        raw = self.service.store.get_state(self._key("filter"))
        if raw:
            try:
                return QueueFilter(**json.loads(raw))
            except (TypeError, ValueError, UserError):
                pass
        return QueueFilter()

    def set_filter(self, flt: QueueFilter) -> None:
        if self.service is None:
            return
        self.panel.flush()
        self.service.store.set_state(self._key("filter"), json.dumps(flt.__dict__))
        image_id = self.current.detail.record.id if self.current else None
        self.model.set_filter(flt)
        row = self._find_row(image_id) if image_id is not None else None
        self.session.current_row = -1
        self.select_row(row if row is not None else 0)

    def scores_changed(self) -> None:
        """New scores and a new queue are in the store: show them, in the queue's order.

        The list sorts by score until a product has its first queue, and an inspection is
        what writes that queue, so the order is asked again each time."""
        if self.service is None:
            return
        self.session.forget_all()
        self.service.refresh_order()
        self.set_filter(self.model.filter)
        self._refresh_progress()

    def _reload_rows(self) -> None:
        """Re-read the list from the store, keeping the shown image's row current."""
        image_id = self.current.detail.record.id if self.current else None
        self.model.set_filter(self.model.filter)
        row = self._find_row(image_id) if image_id is not None else None
        if row is not None:
            self.session.current_row = row

    def _find_row(self, image_id: int) -> int | None:
        for page in range(RESTORE_SCAN_PAGES):
            row = page * 256
            if row >= self.model.rowCount():
                break
            self.model.row_at(row)
            found = self.model.find_row(image_id)
            if found is not None:
                return found
        return None

    def _load_reference(self) -> None:
        assert self.service is not None
        service = self.service
        record = service.reference_image()
        if record is None:
            self.reference.set_reference(None, None)
            return

        def job(_progress: Any, _cancel: Any) -> Any:
            from workstation.core.imageio import read_image

            # a comparison view: a reduced read keeps huge references cheap (a scan too
            # large to decode here comes from a reduced level of its pyramid)
            raster = large_raster(record, service.store.path)
            if raster is not None:
                rgb = raster.reduced(REFERENCE_MAX_SIDE)
            else:
                rgb = read_image(record.path, max_side=REFERENCE_MAX_SIDE)
            return image_tiles(rgb), (record.width, record.height), record.width / rgb.shape[1]

        self.io.submit(
            job,
            channel="reference",
            on_result=lambda result: self._show_reference(*result),
            on_error=lambda exc: self.message.emit(f"reference image: {exc}"),
        )

    def _show_reference(self, tiles: Any, size: tuple[int, int], scale: float) -> None:
        self.reference.set_reference(tiles, size, scale)
        self.reference.follow(self.canvas)

    # -- navigation ----------------------------------------------------------------------------
    def select_row(self, row: int) -> None:
        """Show the image at ``row`` of the list (clamped); flushes pending text first."""
        if self.service is None or self.model.rowCount() == 0:
            return
        clamped = max(0, min(self.model.rowCount() - 1, row))
        if self.model.row_at(clamped) is None:
            return
        self.panel.flush()
        image_id = self.session.select(clamped)
        if image_id is not None:
            self.service.store.set_state(self._key("image"), str(image_id))

    def next(self) -> None:
        self.select_row(self.current_row + 1)

    def previous(self) -> None:
        self.select_row(self.current_row - 1)

    def _request(self, image_id: int, view: bool) -> None:
        """The session's ``load``: read the image on the io lane (``view``: to show it)."""
        assert self.service is not None
        service = self.service

        def failed(exc: BaseException) -> None:
            self.session.load_failed(image_id)
            if view and not isinstance(exc, CancelledError):
                self.message.emit(str(exc))

        colormap = self.canvas.colormap
        self.io.submit(
            lambda _p, _c: load_image(service, image_id, colormap),
            channel="view" if view else None,
            image_id=image_id,
            on_result=lambda loaded: self.session.loaded(loaded, view=view),
            on_error=failed,
        )

    def _show(self, shown: Shown[LoadedImage]) -> None:
        """The session's ``shown``: draw the image, its mask editor and its explanations."""
        loaded = shown.loaded
        self.canvas.set_content(
            loaded.content,
            shown.editor,
            keep_view=shown.keep_view,
            mask_prepared=shown.fresh_editor,
        )
        if self._pending_view is not None:
            self.canvas.apply_view_state(self._pending_view)
            self._pending_view = None
        detail = loaded.detail
        assert self.service is not None
        self.panel.show_explanations(detail.draft, detail.edit, self.service.defect_types())
        self.reference.follow(self.canvas)
        self.image_shown.emit(loaded.content.image_id)

    # -- writes --------------------------------------------------------------------------------
    def _write(self, what: str, image_id: int, fn: Callable[[ReviewService], Any]) -> None:
        """Queue a store write on the io lane; the shown image's cached detail is dropped."""
        assert self.service is not None
        service = self.service
        self.session.write_started(image_id)

        def job(_progress: ProgressFn, _cancel: CancelToken) -> tuple[int, int]:
            fn(service)
            return service.progress()

        def done(progress: tuple[int, int]) -> None:
            self.session.write_ended(image_id)
            self.progress_changed.emit(*progress)
            self.committed.emit(what, image_id)

        def failed(exc: BaseException) -> None:
            self.session.write_ended(image_id)
            self._reload_rows()  # the list showed the edit before it was saved
            self.report_failure(f"could not save the {what}", exc)

        self.io.submit(job, image_id=image_id, on_result=done, on_error=failed, essential=True)

    def _on_mask_edited(self, _diff: Any = None) -> None:
        if self.current is None or self.canvas.editor is None:
            return
        image_id = self.current.content.image_id
        mask = self.canvas.editor.mask.copy()
        self._write("mask", image_id, lambda s: s.save_mask(image_id, mask))

    def _on_text_edited(self, explanation: Explanation) -> None:
        if self.current is None:
            return
        image_id = self.current.content.image_id
        self._write("text", image_id, lambda s: s.save_explanation(image_id, explanation))

    def review(self, verdict: ReviewVerdict) -> None:
        """Record the verdict for the shown image and move to the next one."""
        if self.current is None:
            return
        self.panel.flush()
        image_id = self.current.content.image_id
        if verdict == "normal" and self.canvas.editor is not None and self.canvas.editor.mask.any():
            box = self.canvas.editor.clear()  # shown and undoable; the service writes the revision
            self.canvas.refresh_mask(box.box if box else None)
        if verdict in ("normal", "anomalous"):
            self.panel.set_verdict(verdict)
        self._write("review", image_id, lambda s: s.review(image_id, verdict))
        entry = self.model.row_at(self.current_row)
        if entry is not None and entry.image.id == image_id:
            self.model.replace_row(self.current_row, replace(entry, review_verdict=verdict))
        self.next()

    def undo(self) -> None:
        self.session.undo()

    def redo(self) -> None:
        self.session.redo()

    def _undone(self, box: Any) -> None:
        """The session's ``mask_changed`` (undo / redo): draw the box and save the mask."""
        self.canvas.refresh_mask(box)
        self._on_mask_edited()

    def mask_from_heatmap(self) -> None:
        if self.current is None or self.service is None or self.canvas.editor is None:
            return
        try:
            proposed = self.service.heatmap_mask(self.current.detail)
        except UserError as exc:
            self.message.emit(str(exc))
            return
        self._apply_whole_mask(proposed)

    def clear_mask(self) -> None:
        if self.canvas.editor is not None:
            self._apply_whole_mask(np.zeros_like(self.canvas.editor.mask))

    def _apply_whole_mask(self, mask: np.ndarray) -> None:
        assert self.canvas.editor is not None
        diff = self.canvas.editor.replace(mask)
        if diff is None:
            return
        self.canvas.refresh_mask(diff.box)
        self._on_mask_edited(diff)

    # -- state ---------------------------------------------------------------------------------
    def _on_view_changed(self) -> None:
        self.reference.follow(self.canvas)
        if not self._shut_down:  # a closing window still resizes; its store may be closed
            self._view_timer.start()

    def _save_view(self) -> None:
        if self.service is not None and self.canvas.content is not None:
            self.service.store.set_state(self._key("view"), json.dumps(self.canvas.view_state()))

    def _refresh_progress(self) -> None:
        if self.service is not None:
            self.progress_changed.emit(*self.service.progress())

    def shutdown(self) -> None:
        """Flush typing and the view; the io lane writes what is queued before it stops."""
        self.panel.flush()
        self._view_timer.stop()
        if not self._shut_down:
            self._shut_down = True
            self._save_view()
