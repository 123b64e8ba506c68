"""A very large image on the canvas: level-of-detail tiles read on demand from its pyramid.

The item covers the whole image in scene (full-resolution) coordinates but paints only
the tiles the view exposes, at the pyramid level that matches the zoom
(``core.raster.Raster.level_for``): zoomed out, a few tiles of a reduced level show the
whole scan; at 1:1 the full-resolution tiles under the viewport. Tiles become QImages on
first paint and stay in a small LRU cache, so memory is bounded by ``CACHE_TILES`` tiles,
never by the image.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from workstation.core.imageio import LARGE_PIXELS
from workstation.core.raster import Raster, ensure_raster, tiles_folder
from workstation.core.types import ImageRecord
from workstation.gui.render import rgb_qimage

TILE = 512
CACHE_TILES = 96
"""96 tiles of 512 x 512 RGB32: about 100 MB, several screens of a 4k display."""


def large_raster(record: ImageRecord, store_path: Path) -> Raster | None:
    """The pyramid of an image too large to decode in the app (built once by a child
    process, beside the store), or None for an image that is read whole as before."""
    if record.width * record.height <= LARGE_PIXELS:
        return None
    return ensure_raster(record.path, tiles_folder(store_path, record.sha256))


class TiledImageItem(QGraphicsItem):
    def __init__(self, raster: Raster, *, tile: int = TILE, cache_tiles: int = CACHE_TILES) -> None:
        super().__init__()
        self.raster = raster
        self.tile = tile
        self.cache_tiles = cache_tiles
        self._cache: OrderedDict[tuple[int, int, int], QImage] = OrderedDict()
        self.tiles_read = 0
        """Tiles read from the pyramid so far (the cache's misses)."""
        self.last_level = 0
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    def boundingRect(self) -> QRectF:
        w, h = self.raster.size
        return QRectF(0, 0, w, h)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionGraphicsItem,
        widget: QWidget | None = None,
    ) -> None:
        scale = option.levelOfDetailFromTransform(painter.worldTransform())
        level = self.raster.level_for(scale)
        self.last_level = level
        factor = 2**level
        rows, cols = self.raster.levels[level].shape[:2]
        exposed = option.exposedRect.intersected(self.boundingRect())
        t = self.tile
        x0 = max(0, int(exposed.left() / factor) // t)
        y0 = max(0, int(exposed.top() / factor) // t)
        x1 = min((cols - 1) // t, int(exposed.right() / factor) // t)
        y1 = min((rows - 1) // t, int(exposed.bottom() / factor) // t)
        for ty in range(y0, y1 + 1):
            for tx in range(x0, x1 + 1):
                image = self._tile_image(level, tx, ty)
                target = QRectF(
                    tx * t * factor,
                    ty * t * factor,
                    image.width() * factor,
                    image.height() * factor,
                )
                painter.drawImage(target, image)

    def _tile_image(self, level: int, tx: int, ty: int) -> QImage:
        key = (level, tx, ty)
        image = self._cache.get(key)
        if image is not None:
            self._cache.move_to_end(key)
            return image
        t = self.tile
        rgb = self.raster.region(level, tx * t, ty * t, (tx + 1) * t, (ty + 1) * t)
        image = rgb_qimage(rgb)
        self._cache[key] = image
        self.tiles_read += 1
        while len(self._cache) > self.cache_tiles:
            self._cache.popitem(last=False)
        return image

    @property
    def cached(self) -> int:
        return len(self._cache)
