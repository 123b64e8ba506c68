"""Turning arrays into paintable images, safe to call from a worker thread.

QImage and QPainterPath are plain values that any thread may build; only QPixmap belongs
to the GUI thread. So the io lane prepares everything here (colour conversion, colormaps,
contours) and the GUI thread merely wraps the results, which keeps an image switch cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRect
from PySide6.QtGui import QImage, QPainterPath

COLORMAPS: tuple[str, ...] = ("inferno", "cividis", "viridis", "turbo")
"""inferno first: the threshold sits mid-range, and inferno's middle is a saturated
red-orange that stands out on gray metal, where cividis's middle is itself gray (the
heatmap did not read). Like cividis its lightness rises monotonically, so it stays
readable with the common colour-vision deficiencies."""
DEFAULT_COLORMAP = COLORMAPS[0]
IMAGE_TILE = 1024
HEATMAP_DISPLAY_SIDE = 1024
"""Heatmaps are smooth; showing them at most this large (scaled up) saves memory on 8k images."""


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table for a named colormap."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}")
    lut = pg.colormap.get(name).getLookupTable(nPts=256, alpha=False)
    return np.ascontiguousarray(lut[:, :3], dtype=np.uint8)


def rgb_qimage(rgb: np.ndarray) -> QImage:
    """(H, W, 3) uint8 RGB -> a QImage in the raster engine's native RGB32 format (a copy)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    view = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return view.convertToFormat(QImage.Format.Format_RGB32)


def image_tiles(rgb: np.ndarray, tile: int = IMAGE_TILE) -> list[tuple[int, int, QImage]]:
    """Split an image into (x, y, QImage) tiles so a huge image paints only what is visible."""
    full = rgb_qimage(rgb)
    h, w = rgb.shape[:2]
    return [
        (x, y, full.copy(QRect(x, y, min(tile, w - x), min(tile, h - y))))
        for y in range(0, h, tile)
        for x in range(0, w, tile)
    ]


def overview_factor(width: int, height: int) -> int:
    """Reduction of the overview level: the whole image in at most ~2048 px on its long side."""
    return max(2, -(-max(width, height) // 2048))


def overview_qimage(rgb: np.ndarray, factor: int) -> QImage:
    """A reduced copy shown instead of the tiles when zoomed out (a two-level pyramid)."""
    h, w = rgb.shape[:2]
    size = (max(1, w // factor), max(1, h // factor))
    return rgb_qimage(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def mask_qimage(mask: np.ndarray, rgba: tuple[int, int, int, int]) -> QImage:
    """0/1 mask patch -> premultiplied ARGB32 with ``rgba`` where the mask is set."""
    r, g, b, a = rgba
    packed = np.uint32((a << 24) | ((r * a // 255) << 16) | ((g * a // 255) << 8) | (b * a // 255))
    pixels = np.ascontiguousarray(mask, dtype=np.uint32) * packed
    h, w = mask.shape
    image = QImage(pixels.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)
    return image.copy()


@dataclass(frozen=True)
class HeatmapDisplay:
    """A heatmap reduced for display, with the range that maps onto the colormap."""

    values: np.ndarray
    """float32, at most HEATMAP_DISPLAY_SIDE on the long side."""
    scale: float
    """image pixels per display pixel."""
    vmin: float
    vmax: float
    threshold: float | None
    peak: float
    """The map's highest value (full resolution), for the colour bar."""

    def value_at(self, x: float, y: float) -> float | None:
        """The score under image pixel (x, y), or None outside the map."""
        row, col = int(y / self.scale), int(x / self.scale)
        h, w = self.values.shape
        if 0 <= row < h and 0 <= col < w and x >= 0 and y >= 0:
            return float(self.values[row, col])
        return None


def reduce_heatmap(
    anomaly_map: np.ndarray,
    threshold: float | None,
    image_width: int | None = None,
    normal_level: float | None = None,
) -> HeatmapDisplay:
    """Downsample and fix the colour range; the map may be smaller than the image.

    The range starts at the normal level, which is fully transparent: the product's
    typical normal score (``normal_level``, the same for every image of the product, so
    one colour means one score everywhere), else the map's own median. Experts report
    calibrated scores whose normal level may be far from zero (often negative), and a
    range starting at zero hid everything below it. With a threshold the range ends as far
    above it as the normal level lies below, so the threshold sits mid-colour: a near miss
    glows, a normal image stays calm instead of being stretched by its own maximum.
    """
    h, w = anomaly_map.shape
    scale = max(1.0, max(h, w) / HEATMAP_DISPLAY_SIDE)
    values = anomaly_map.astype(np.float32, copy=False)
    if scale > 1.0:
        size = (max(1, round(w / scale)), max(1, round(h / scale)))
        values = cv2.resize(values, size, interpolation=cv2.INTER_AREA)
    peak = float(anomaly_map.max()) if anomaly_map.size else 0.0
    vmin = float(np.median(values))
    if normal_level is not None and (threshold is None or normal_level < threshold):
        vmin = float(normal_level)
    if threshold is not None and threshold > vmin:
        vmax = 2.0 * float(threshold) - vmin
    else:
        vmax = float(values.max())
    if vmax <= vmin:
        vmax = vmin + 1e-6
    scale = (image_width or w) / values.shape[1]
    return HeatmapDisplay(values, scale, vmin, vmax, threshold, peak)


@lru_cache(maxsize=16)
def _heat_lut(name: str) -> np.ndarray:
    """256 premultiplied ARGB32 pixels: the colormap, alpha rising with the value.

    Transparent at the typical level, opaque from a little below the threshold (mid-range).
    """
    rgb = heat_colors(name).astype(np.uint32)
    level = np.arange(256, dtype=np.float64) / 255
    alpha = np.clip(level * 2.6 * 255, 0, 255).astype(np.uint32)
    r, g, b = (rgb[:, i] * alpha // 255 for i in range(3))
    return (alpha << 24) | (r << 16) | (g << 8) | b


def heat_colors(name: str) -> np.ndarray:
    """(256, 3) uint8 colours of the heat layer: the colormap without its darkest fifth.

    A near-black low end reads as a shadow, not as heat, over a dark part; starting a
    fifth in keeps every visible level a colour. The colour bar uses the same table.
    """
    lut = colormap_lut(name)
    index = np.linspace(0.2 * 255, 255, 256).round().astype(int)
    return np.ascontiguousarray(lut[index])


def heatmap_qimage(display: HeatmapDisplay, colormap: str) -> QImage:
    """Colormapped heatmap whose alpha rises with the value, so calm areas stay see-through."""
    span = display.vmax - display.vmin
    clipped = np.clip(display.values, display.vmin, display.vmax)
    index = ((clipped - display.vmin) * (255.0 / span)).astype(np.uint8)
    pixels = np.ascontiguousarray(_heat_lut(colormap)[index])
    h, w = index.shape
    image = QImage(pixels.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)
    return image.copy()


def contour_path(binary: np.ndarray, scale: float = 1.0) -> QPainterPath:
    """Outline of a 0/1 array as a path in image coordinates (``scale`` = pixels per cell)."""
    path = QPainterPath()
    if not binary.any():
        return path
    contours, _ = cv2.findContours(binary.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.float64) * scale
        if len(points) < 2:
            continue
        path.moveTo(QPointF(*points[0]))
        for x, y in points[1:]:
            path.lineTo(QPointF(x, y))
        path.closeSubpath()
    return path


def threshold_contour(display: HeatmapDisplay) -> QPainterPath:
    if display.threshold is None:
        return QPainterPath()
    return contour_path(display.values >= display.threshold, display.scale)


def mask_tile_images(
    mask: np.ndarray, rgba: tuple[int, int, int, int], tile: int
) -> dict[tuple[int, int], QImage]:
    """Images of the non-empty ``tile``-sized squares of a mask, keyed by (row, column)."""
    h, w = mask.shape
    tiles = {}
    for ty in range(0, (h + tile - 1) // tile):
        for tx in range(0, (w + tile - 1) // tile):
            patch = mask[ty * tile : (ty + 1) * tile, tx * tile : (tx + 1) * tile]
            if patch.any():
                tiles[(ty, tx)] = mask_qimage(patch, rgba)
    return tiles


def mask_outline(mask: np.ndarray) -> QPainterPath:
    """Mask outline; very large masks are outlined at reduced size (the fill stays exact)."""
    h, w = mask.shape
    step = max(1, int(np.ceil(max(h, w) / 4096)))
    if step == 1:
        return contour_path(mask)
    return contour_path(mask[::step, ::step], float(step))
