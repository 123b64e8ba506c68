"""The image canvas: tiled image, heatmap, threshold contour and mask layers, plus mask tools.

A QGraphicsView paints only the tiles in view, so an 8000 x 8000 image pans as smoothly as
a small one. Mouse input becomes :class:`~workstation.core.mask_tools.MaskEditor` calls; a
finished edit is announced with ``mask_edited(diff)`` on mouse release so it can be
committed at once. The normal reference image sits beside it in
:class:`~workstation.gui.zoom_view.ReferenceView`, following the canvas's zoom and pan when
the sizes match.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainterPath,
    QPen,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsView,
    QWidget,
)

from workstation.core.mask_tools import MaskEditor, Tool
from workstation.core.undo import Box, MaskDiff
from workstation.gui.canvas_content import (
    CONTOUR_COLOR,
    DEFAULT_HEAT_OPACITY,
    MASK_OUTLINE,
    Z_CONTOUR,
    Z_HEAT,
    Z_IMAGE,
    Z_OUTLINE,
    Z_TOOL,
    CanvasContent,
)
from workstation.gui.mask_layer import MaskLayer
from workstation.gui.render import DEFAULT_COLORMAP, heatmap_qimage, threshold_contour
from workstation.gui.tiled_view import TiledImageItem
from workstation.gui.zoom_view import ZoomView, tile_items


class Canvas(ZoomView):
    """Review canvas; see the module docstring."""

    mask_edited = Signal(object)
    """A finished edit (MaskDiff), emitted on mouse release / polygon close."""
    view_changed = Signal()
    brush_size_changed = Signal(int)
    hover_score = Signal(object)
    """The heatmap score under the cursor (float), or None off the map."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.content: CanvasContent | None = None
        self.editor: MaskEditor | None = None
        self.tool: Tool = "brush"
        self.colormap = DEFAULT_COLORMAP
        self.heat_opacity = DEFAULT_HEAT_OPACITY
        self.heat_visible = True
        self.contour_visible = True
        self._image_items: list[QGraphicsPixmapItem] = []
        self.tiled_item: TiledImageItem | None = None
        scene = self.scene()
        self._overview_item = QGraphicsPixmapItem()
        self._overview_item.setZValue(Z_IMAGE)
        self._overview_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        scene.addItem(self._overview_item)
        self._heat_item = QGraphicsPixmapItem()
        self._heat_item.setZValue(Z_HEAT)
        self._heat_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        scene.addItem(self._heat_item)
        self._contour_item = self._path_item(CONTOUR_COLOR, Z_CONTOUR, Qt.PenStyle.DashLine)
        self._mask_layer = MaskLayer(
            scene, self._path_item(MASK_OUTLINE, Z_OUTLINE, Qt.PenStyle.SolidLine)
        )
        self._poly_item = self._path_item(QColor(255, 220, 0), Z_TOOL, Qt.PenStyle.SolidLine)
        self._cursor = QGraphicsEllipseItem()
        self._cursor.setPen(self._cosmetic_pen(QColor(255, 255, 255, 200), Qt.PenStyle.SolidLine))
        self._cursor.setZValue(Z_TOOL)
        self._cursor.setVisible(False)
        scene.addItem(self._cursor)
        self._poly: list[QPointF] = []
        self._space = False
        self._pan_from: QPointF | None = None
        self._brush_erase = False

    # -- construction helpers ----------------------------------------------------------------
    @staticmethod
    def _cosmetic_pen(color: QColor, style: Qt.PenStyle) -> QPen:
        pen = QPen(color, 1.5, style)
        pen.setCosmetic(True)
        return pen

    def _path_item(self, color: QColor, z: int, style: Qt.PenStyle) -> QGraphicsPathItem:
        item = QGraphicsPathItem()
        item.setPen(self._cosmetic_pen(color, style))
        item.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        item.setZValue(z)
        self.scene().addItem(item)
        return item

    # -- content -----------------------------------------------------------------------------
    def set_content(
        self,
        content: CanvasContent,
        editor: MaskEditor,
        *,
        keep_view: bool = False,
        mask_prepared: bool = False,
    ) -> None:
        """Show a new image with its heatmap and mask; the view is fitted unless kept.

        ``mask_prepared`` says the editor's mask is the one ``content.overlays`` was rendered
        from, so the prepared mask tiles can be used instead of rendering them here.
        """
        scene = self.scene()
        same_size = self.content is not None and self.content.size == content.size
        for item in self._image_items:
            scene.removeItem(item)
        self._image_items = tile_items(scene, content.tiles, Z_IMAGE)
        self._set_tiled(TiledImageItem(content.raster) if content.raster is not None else None)
        if content.overview is not None:
            self._overview_item.setPixmap(QPixmap.fromImage(content.overview))
            self._overview_item.setScale(content.overview_factor)
        else:
            self._overview_item.setPixmap(QPixmap())
        self.content = content
        self.editor = editor
        self._poly = []
        self._poly_item.setPath(QPainterPath())
        w, h = content.size
        self.setSceneRect(QRectF(0, 0, w, h))
        overlays = content.overlays
        if overlays is not None and overlays.colormap == self.colormap:
            self._show_heatmap(overlays.heat_image, overlays.contour)
        else:
            self._render_heatmap()
        if overlays is not None and mask_prepared:
            self._mask_layer.show_tiles(overlays.mask_tiles, overlays.mask_outline)
        else:
            self.refresh_mask()
        if not (keep_view and same_size):
            self.fit()
        self._choose_level()
        self._update_cursor_shape()

    def clear(self) -> None:
        scene = self.scene()
        for item in self._image_items:
            scene.removeItem(item)
        self._image_items = []
        self._set_tiled(None)
        self._overview_item.setPixmap(QPixmap())
        self._mask_layer.clear()
        self._heat_item.setPixmap(QPixmap())
        self._contour_item.setPath(QPainterPath())
        self.content = None
        self.editor = None

    def _set_tiled(self, item: TiledImageItem | None) -> None:
        if self.tiled_item is not None:
            self.scene().removeItem(self.tiled_item)
        self.tiled_item = item
        if item is not None:
            item.setZValue(Z_IMAGE)
            self.scene().addItem(item)

    def _render_heatmap(self) -> None:
        heat = self.content.heatmap if self.content else None
        if heat is None:
            self._show_heatmap(None, QPainterPath())
        else:
            self._show_heatmap(heatmap_qimage(heat, self.colormap), threshold_contour(heat))

    def _show_heatmap(self, image: QImage | None, contour: QPainterPath) -> None:
        heat = self.content.heatmap if self.content else None
        if image is None or heat is None:
            self._heat_item.setPixmap(QPixmap())
            self._contour_item.setPath(QPainterPath())
            return
        self._heat_item.setPixmap(QPixmap.fromImage(image))
        self._heat_item.setScale(heat.scale)
        self._heat_item.setOpacity(self.heat_opacity)
        self._heat_item.setVisible(self.heat_visible)
        self._contour_item.setPath(contour)
        self._contour_item.setVisible(self.heat_visible and self.contour_visible)

    def refresh_mask(self, box: Box | None = None, *, outline: bool = True) -> None:
        """Repaint the mask tiles touching ``box`` (all when None) and, if asked, the outline."""
        if self.editor is not None:
            self._mask_layer.refresh(self.editor.mask, box, outline=outline)

    # -- layer controls ------------------------------------------------------------------------
    def set_heat_opacity(self, opacity: float) -> None:
        self.heat_opacity = min(1.0, max(0.0, opacity))
        self._heat_item.setOpacity(self.heat_opacity)

    def set_heat_visible(self, visible: bool) -> None:
        self.heat_visible = visible
        self._heat_item.setVisible(visible)
        self._contour_item.setVisible(visible and self.contour_visible)

    def set_contour_visible(self, visible: bool) -> None:
        self.contour_visible = visible
        self._contour_item.setVisible(visible and self.heat_visible)

    def set_mask_visible(self, visible: bool) -> None:
        self._mask_layer.set_visible(visible)

    def set_colormap(self, name: str) -> None:
        self.colormap = name
        self._render_heatmap()

    def set_tool(self, tool: Tool) -> None:
        self.tool = tool
        self._poly = []
        self._poly_item.setPath(QPainterPath())
        self.setDragMode(
            QGraphicsView.DragMode.ScrollHandDrag
            if tool == "pan"
            else QGraphicsView.DragMode.NoDrag
        )
        self._update_cursor_shape()

    def set_zoom(self, factor: float) -> None:
        super().set_zoom(factor)
        self._choose_level()

    def _choose_level(self) -> None:
        """Zoomed out, paint the overview (few pixels to scale) instead of the full tiles."""
        content = self.content
        use_overview = (
            content is not None
            and content.overview is not None
            and self.zoom() * content.overview_factor <= 1.0
        )
        self._overview_item.setVisible(use_overview)
        for item in self._image_items:
            item.setVisible(not use_overview)

    def change_brush(self, delta: int) -> None:
        if self.editor is None:
            return
        step = max(1, self.editor.brush_size // 8)
        size = self.editor.set_brush_size(self.editor.brush_size + delta * step)
        self._update_cursor_shape()
        self.brush_size_changed.emit(size)

    def one_to_one(self) -> None:
        self.set_zoom(1.0)
        self.view_changed.emit()

    def fit(self) -> None:
        super().fit()
        self.view_changed.emit()

    # -- view state (relaunch restore) -----------------------------------------------------------
    def view_state(self) -> dict[str, float]:
        rect = self.sceneRect()
        centre = self.mapToScene(self.viewport().rect().center())
        if rect.isEmpty():
            return {}
        return {
            "zoom": self.zoom(),
            "cx": centre.x() / rect.width(),
            "cy": centre.y() / rect.height(),
        }

    def apply_view_state(self, state: dict[str, float]) -> None:
        rect = self.sceneRect()
        if rect.isEmpty() or not {"zoom", "cx", "cy"} <= state.keys():
            return
        self.set_zoom(float(state["zoom"]))
        self.centerOn(float(state["cx"]) * rect.width(), float(state["cy"]) * rect.height())
        self.view_changed.emit()

    # -- input -------------------------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.set_zoom(self.zoom() * (1.25**steps))
            self.view_changed.emit()
        event.accept()

    def _scene_point(self, event: QMouseEvent) -> QPointF:
        return self.mapToScene(event.position().toPoint())

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.MiddleButton or (
            self._space and event.button() == Qt.MouseButton.LeftButton
        ):
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if self.tool == "pan" or self.editor is None or self.content is None:
            super().mousePressEvent(event)
            return
        point = self._scene_point(event)
        button = event.button()
        if self.tool in ("brush", "eraser") and button in (
            Qt.MouseButton.LeftButton,
            Qt.MouseButton.RightButton,
        ):
            erase = self.tool == "eraser" or button == Qt.MouseButton.RightButton
            box = self.editor.begin_stroke(point.x(), point.y(), erase=erase)
            self.refresh_mask(box, outline=False)
        elif self.tool == "polygon" and button == Qt.MouseButton.LeftButton:
            self._poly.append(point)
            self._show_poly(point)
        elif self.tool == "lasso" and button == Qt.MouseButton.LeftButton:
            self._poly = [point]
        elif self.tool == "fill" and button == Qt.MouseButton.LeftButton:
            self._finish(self.editor.flood_fill(self.content.rgb, point.x(), point.y()))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(
                self.horizontalScrollBar().value() - round(delta.x())
            )
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
            self.view_changed.emit()
            return
        point = self._scene_point(event)
        self._move_cursor(point)
        heat = self.content.heatmap if self.content is not None else None
        self.hover_score.emit(heat.value_at(point.x(), point.y()) if heat is not None else None)
        if self.editor is not None and self.editor.stroking:
            self.refresh_mask(self.editor.stroke_to(point.x(), point.y()), outline=False)
        elif self.tool == "lasso" and self._poly and event.buttons() & Qt.MouseButton.LeftButton:
            self._poly.append(point)
            self._show_poly(None)
        elif self.tool == "polygon" and self._poly:
            self._show_poly(point)
        else:
            super().mouseMoveEvent(event)
            if self.tool == "pan" and event.buttons():
                self.view_changed.emit()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None:
            self._pan_from = None
            self._update_cursor_shape()
            return
        if self.editor is not None and self.editor.stroking:
            self._finish(self.editor.end_stroke())
        elif self.tool == "lasso" and self._poly and self.editor is not None:
            points, self._poly = self._poly, []
            self._poly_item.setPath(QPainterPath())
            self._finish(self.editor.fill_polygon([(p.x(), p.y()) for p in points]))
        else:
            super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self.tool == "polygon":
            self.close_polygon()
        else:
            super().mouseDoubleClickEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.tool == "polygon":
            self.close_polygon()
        elif key == Qt.Key.Key_Escape and self._poly:
            self._poly = []
            self._poly_item.setPath(QPainterPath())
        elif key == Qt.Key.Key_Backspace and self._poly:
            self._poly.pop()
            self._show_poly(None)
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._update_cursor_shape()
        else:
            super().keyReleaseEvent(event)

    def close_polygon(self) -> None:
        if self.editor is None or len(self._poly) < 3:
            return
        points, self._poly = self._poly, []
        self._poly_item.setPath(QPainterPath())
        self._finish(self.editor.fill_polygon([(p.x(), p.y()) for p in points]))

    def _finish(self, diff: MaskDiff | None) -> None:
        self.refresh_mask(diff.box if diff else (0, 0, 0, 0))
        if diff is not None:
            self.mask_edited.emit(diff)

    def _show_poly(self, hover: QPointF | None) -> None:
        path = QPainterPath()
        if self._poly:
            path.moveTo(self._poly[0])
            for point in self._poly[1:]:
                path.lineTo(point)
            if hover is not None:
                path.lineTo(hover)
        self._poly_item.setPath(path)

    def _move_cursor(self, point: QPointF) -> None:
        if self.editor is None or self.tool not in ("brush", "eraser"):
            return
        r = self.editor.brush_size / 2
        self._cursor.setRect(point.x() - r, point.y() - r, 2 * r, 2 * r)
        self._cursor.setVisible(True)

    def leaveEvent(self, event: QEvent) -> None:
        self._cursor.setVisible(False)
        self.hover_score.emit(None)
        super().leaveEvent(event)

    def _update_cursor_shape(self) -> None:
        brush = self.tool in ("brush", "eraser") and self.editor is not None
        if not brush:
            self._cursor.setVisible(False)
        else:
            rect = self._cursor.rect()
            r = self.editor.brush_size / 2  # type: ignore[union-attr]
            c = rect.center()
            self._cursor.setRect(c.x() - r, c.y() - r, 2 * r, 2 * r)
        shape = {
            "pan": Qt.CursorShape.OpenHandCursor,
            "polygon": Qt.CursorShape.CrossCursor,
            "lasso": Qt.CursorShape.CrossCursor,
            "fill": Qt.CursorShape.PointingHandCursor,
        }.get(self.tool, Qt.CursorShape.CrossCursor)
        self.viewport().setCursor(shape)
