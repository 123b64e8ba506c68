"""What one image shows on the canvas, and the overlay layers prepared off the GUI thread.

Why a module of its own: the review controller builds :class:`CanvasContent` and
:func:`prepare_overlays` on a worker thread, and the toolbar needs the default opacity;
neither needs the canvas widget itself. The layer constants (tile size, colours, z order)
live here because both the prepared overlays and the canvas that shows them use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtGui import QColor, QImage, QPainterPath

from workstation.core.raster import Raster
from workstation.gui.render import (
    HeatmapDisplay,
    heatmap_qimage,
    mask_outline,
    mask_tile_images,
    threshold_contour,
)

MASK_TILE = 512
MASK_RGBA = (255, 64, 96, 80)
"""Light fill (the outline marks the edge), so the heatmap under the mask still reads."""
MASK_OUTLINE = QColor(255, 80, 110)
CONTOUR_COLOR = QColor(255, 255, 255)
Z_IMAGE, Z_MASK, Z_HEAT, Z_CONTOUR, Z_OUTLINE, Z_TOOL = 0, 1, 2, 3, 4, 5
"""The heat sits above the mask's fill: a ground-truth or drawn mask covers exactly the
defect, and a fill on top tinted the heat there into a dull brown; the mask still reads
by its outline, drawn above both."""
DEFAULT_HEAT_OPACITY = 0.7


@dataclass(frozen=True)
class Overlays:
    """Heatmap and mask layers rendered ahead (worker thread) for one colormap and mask."""

    colormap: str
    heat_image: QImage | None
    contour: QPainterPath
    mask_tiles: dict[tuple[int, int], QImage]
    mask_outline: QPainterPath


def prepare_overlays(heat: HeatmapDisplay | None, mask: np.ndarray, colormap: str) -> Overlays:
    """Worker-thread half of showing an image: every array-to-image conversion."""
    return Overlays(
        colormap=colormap,
        heat_image=heatmap_qimage(heat, colormap) if heat is not None else None,
        contour=threshold_contour(heat) if heat is not None else QPainterPath(),
        mask_tiles=mask_tile_images(mask, MASK_RGBA, MASK_TILE),
        mask_outline=mask_outline(mask),
    )


@dataclass(frozen=True)
class CanvasContent:
    """Everything one image needs on screen, prepared off the GUI thread."""

    image_id: int
    rgb: np.ndarray
    tiles: list[tuple[int, int, QImage]]
    heatmap: HeatmapDisplay | None = None
    overlays: Overlays | None = None
    overview: QImage | None = None
    """The image reduced by ``overview_factor``, painted instead of the tiles when zoomed out."""
    overview_factor: int = 1
    raster: Raster | None = None
    """A very large image's pyramid (``core.raster``): painted by level-of-detail tiles
    instead of ``tiles``; ``rgb`` is then its full-resolution memory map."""

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.rgb.shape[:2]
        return w, h
