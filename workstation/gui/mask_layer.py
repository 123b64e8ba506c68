"""The mask layer of the canvas: 512-px tiles of the mask's fill plus its outline.

Why a class of its own: a brush stroke repaints only the tiles it touched, and the tiles of
a previous, larger image must go when a new one is shown; that bookkeeping is one job,
apart from the canvas's input handling and the other layers.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPainterPath, QPixmap
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsScene

from workstation.core.undo import Box
from workstation.gui.canvas_content import MASK_RGBA, MASK_TILE, Z_MASK
from workstation.gui.render import mask_outline, mask_qimage


class MaskLayer:
    """Mask tiles keyed by ``(tile row, tile column)`` and the outline path, in one scene."""

    def __init__(self, scene: QGraphicsScene, outline_item: QGraphicsPathItem) -> None:
        self._scene = scene
        self.outline_item = outline_item
        self.visible = True
        self._items: dict[tuple[int, int], QGraphicsPixmapItem] = {}

    def _add_tile(self, key: tuple[int, int], pixmap: QPixmap) -> None:
        ty, tx = key
        item = QGraphicsPixmapItem(pixmap)
        item.setPos(tx * MASK_TILE, ty * MASK_TILE)
        item.setZValue(Z_MASK)
        item.setVisible(self.visible)
        self._scene.addItem(item)
        self._items[key] = item

    def clear(self) -> None:
        for item in self._items.values():
            self._scene.removeItem(item)
        self._items = {}
        self.outline_item.setPath(QPainterPath())

    def show_tiles(self, tiles: dict[tuple[int, int], QImage], outline: QPainterPath) -> None:
        """Replace every tile with ones rendered ahead (worker thread)."""
        for item in self._items.values():
            self._scene.removeItem(item)
        self._items = {}
        for key, image in tiles.items():
            self._add_tile(key, QPixmap.fromImage(image))
        self.outline_item.setPath(outline)

    def refresh(self, mask: np.ndarray, box: Box | None = None, *, outline: bool = True) -> None:
        """Repaint the tiles touching ``box`` (all when None) and, if asked, the outline."""
        h, w = mask.shape
        y0, x0, y1, x1 = box if box is not None else (0, 0, h, w)
        for ty in range(y0 // MASK_TILE, (max(y1, 1) - 1) // MASK_TILE + 1):
            for tx in range(x0 // MASK_TILE, (max(x1, 1) - 1) // MASK_TILE + 1):
                patch = mask[
                    ty * MASK_TILE : (ty + 1) * MASK_TILE, tx * MASK_TILE : (tx + 1) * MASK_TILE
                ]
                item = self._items.get((ty, tx))
                if not patch.any():
                    if item is not None:
                        self._scene.removeItem(item)
                        del self._items[(ty, tx)]
                    continue
                pixmap = QPixmap.fromImage(mask_qimage(patch, MASK_RGBA))
                if item is None:
                    self._add_tile((ty, tx), pixmap)
                else:
                    item.setPixmap(pixmap)
        if box is None:  # a whole refresh also drops tiles of a previous, larger image
            for key in [k for k in self._items if k[0] * MASK_TILE >= h or k[1] * MASK_TILE >= w]:
                self._scene.removeItem(self._items.pop(key))
        if outline:
            self.outline_item.setPath(mask_outline(mask))

    def set_visible(self, visible: bool) -> None:
        self.visible = visible
        for item in self._items.values():
            item.setVisible(visible)
        self.outline_item.setVisible(visible)
