"""Zoomable image views: the shared view set-up and the normal reference beside the canvas.

Why a module of its own: :class:`ZoomView` (zoom limits, fit, smoothing) is what both the
review :class:`~workstation.gui.canvas.Canvas` and :class:`ReferenceView` are; the reference
only follows the canvas's zoom and pan, so it needs nothing of the canvas's layers or tools.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap, QResizeEvent
from PySide6.QtWidgets import QFrame, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

from workstation.gui.canvas_content import Z_IMAGE

MIN_ZOOM, MAX_ZOOM = 0.01, 64.0


def tile_items(
    scene: QGraphicsScene, tiles: list[tuple[int, int, QImage]], z: int, scale: float = 1.0
) -> list[QGraphicsPixmapItem]:
    items = []
    for x, y, image in tiles:
        item = QGraphicsPixmapItem(QPixmap.fromImage(image))
        item.setPos(x * scale, y * scale)
        item.setScale(scale)
        item.setZValue(z)
        item.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        scene.addItem(item)
        items.append(item)
    return items


class ZoomView(QGraphicsView):
    """Shared view set-up: dark backdrop, cheap repaints, zoom-dependent smoothing."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QColor(24, 26, 30))
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontSavePainterState, True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        self._last_fit = 1.0

    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, factor: float) -> None:
        factor = min(MAX_ZOOM, max(MIN_ZOOM, factor))
        self.setTransform(self.transform().fromScale(factor, factor))
        # pixels stay crisp when magnified (an inspector wants to see them), smooth when reduced
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, factor < 2.0)

    def fit_zoom(self) -> float:
        rect = self.sceneRect()
        if rect.isEmpty():
            return 1.0
        view = self.viewport().rect()
        return min(view.width() / rect.width(), view.height() / rect.height()) * 0.98

    def fit(self) -> None:
        rect = self.sceneRect()
        if rect.isEmpty():
            return
        self.set_zoom(self.fit_zoom())
        self._last_fit = self.zoom()
        self.centerOn(rect.center())

    def resizeEvent(self, event: QResizeEvent) -> None:
        fitted = abs(self.zoom() - self._last_fit) < 1e-6
        super().resizeEvent(event)
        if fitted:  # a fitted view stays fitted when the window or splitter changes
            self.fit()


class ReferenceView(ZoomView):
    """A known-normal image of the same product beside the canvas, for comparison."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setInteractive(False)
        self._items: list[QGraphicsPixmapItem] = []

    def set_reference(
        self,
        tiles: list[tuple[int, int, QImage]] | None,
        size: tuple[int, int] | None,
        scale: float = 1.0,
    ) -> None:
        """Show ``tiles`` (of an image reduced by ``scale``) in the original ``size``."""
        for item in self._items:
            self.scene().removeItem(item)
        self._items = tile_items(self.scene(), tiles, Z_IMAGE, scale) if tiles else []
        if size:
            self.setSceneRect(QRectF(0, 0, size[0], size[1]))
        self.fit()

    def follow(self, canvas: ZoomView) -> None:
        """Mirror the canvas's zoom and centre (relative), so the same spot is compared.

        While the canvas shows its whole image the reference shows its whole image too.
        """
        mine, theirs = self.sceneRect(), canvas.sceneRect()
        if mine.isEmpty() or theirs.isEmpty():
            return
        if canvas.zoom() <= canvas.fit_zoom() * 1.05:
            self.fit()
            return
        ratio = theirs.width() / mine.width()
        self.set_zoom(canvas.zoom() * ratio)
        centre = canvas.mapToScene(canvas.viewport().rect().center())
        self.centerOn(centre.x() / ratio, centre.y() * mine.height() / theirs.height())
