"""Mask operations and region analysis shared by the explainers, the GUI and the metrics.

Pure numpy + OpenCV so it runs without torch and stays fast enough to describe hundreds of
maps a second. Locations use a 3 x 3 grid (AnomalyGPT style) with one fixed vocabulary so
that the template explainer, the VLM prompt, the parser and the location check all agree
on what "upper left" means. A region's location is the grid cell that holds the *largest
part* of its pixels, not the cell of its centroid: a crescent or an L-shaped scratch has
its centroid where there is no defect at all.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import cv2
import numpy as np

from workstation.core.errors import UserError

GRID_ROWS: tuple[str, str, str] = ("upper", "center", "lower")
GRID_COLS: tuple[str, str, str] = ("left", "center", "right")

# Words people (and language models) use for the same rows / columns.
_ROW_SYNONYMS: dict[str, int] = {
    "upper": 0,
    "top": 0,
    "above": 0,
    "middle": 1,
    "center": 1,
    "centre": 1,
    "central": 1,
    "mid": 1,
    "lower": 2,
    "bottom": 2,
    "below": 2,
}
_COL_SYNONYMS: dict[str, int] = {
    "left": 0,
    "middle": 1,
    "center": 1,
    "centre": 1,
    "central": 1,
    "mid": 1,
    "right": 2,
}
_WORD = re.compile(r"[a-z]+")

Cell = tuple[int, int]
"""(row, col) on the 3 x 3 grid, each 0..2."""


def grid_words(cell: Cell) -> str:
    """The location phrase of a grid cell: "upper left", "upper center", ..., "center"."""
    row, col = cell
    if not (0 <= row < 3 and 0 <= col < 3):
        raise ValueError(f"grid cell must be within 3 x 3, got {cell}")
    if row == 1 and col == 1:
        return "center"
    if row == 1:
        return f"center {GRID_COLS[col]}"
    return f"{GRID_ROWS[row]} {GRID_COLS[col]}"


ALL_LOCATIONS: tuple[str, ...] = tuple(grid_words((r, c)) for r in range(3) for c in range(3))


def cell_from_words(text: str) -> Cell | None:
    """Read a location phrase back into a cell; None when it names no grid cell.

    Accepts the synonyms models use ("top-left", "bottom middle", "middle right",
    "centre"). A single row or column word ("left", "top") means that side's middle cell.
    """
    words = _WORD.findall(text.lower())
    row: int | None = None
    col: int | None = None
    for word in words:
        if word in ("left", "right") and col is None:
            col = _COL_SYNONYMS[word]
        elif word in ("upper", "top", "above", "lower", "bottom", "below") and row is None:
            row = _ROW_SYNONYMS[word]
    centre_words = sum(1 for w in words if w in ("middle", "center", "centre", "central", "mid"))
    if row is None and col is None:
        return (1, 1) if centre_words else None
    if row is None:
        row = 1
    if col is None:
        col = 1
    return (row, col)


def band_edges(length: int) -> tuple[int, int, int, int]:
    """Pixel boundaries of the three grid bands along an axis of ``length`` pixels."""
    return (0, round(length / 3), round(2 * length / 3), length)


def grid_cell_counts(mask: np.ndarray) -> np.ndarray:
    """(3, 3) array: how many mask pixels fall into each grid cell."""
    binary = binarize(mask)
    rows = band_edges(binary.shape[0])
    cols = band_edges(binary.shape[1])
    counts = np.zeros((3, 3), dtype=np.int64)
    for r in range(3):
        band = binary[rows[r] : rows[r + 1]]
        for c in range(3):
            counts[r, c] = np.count_nonzero(band[:, cols[c] : cols[c + 1]])
    return counts


def dominant_cell(mask: np.ndarray) -> Cell | None:
    """The cell holding the largest part of the mask (first in reading order on ties)."""
    counts = grid_cell_counts(mask)
    if counts.sum() == 0:
        return None
    flat = int(np.argmax(counts))
    return (flat // 3, flat % 3)


def binarize(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """uint8 0/1 mask from bool, 0/1, 0/255 or float masks; 3-D masks must be single channel."""
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[..., 0]
    if array.ndim != 2:
        raise UserError(f"a mask must be a 2-D array, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.uint8:
        return (array > 0).astype(np.uint8)
    return (array >= threshold).astype(np.uint8)


def mask_from_map(anomaly_map: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels at or above ``threshold`` (NaN never counts) as a uint8 0/1 mask."""
    values = np.asarray(anomaly_map)
    if values.ndim != 2:
        raise UserError(f"an anomaly map must be 2-D, got shape {values.shape}")
    with np.errstate(invalid="ignore"):
        return (values >= threshold).astype(np.uint8)


def area_fraction(mask: np.ndarray) -> float:
    """Share of the image covered by the mask, 0..1."""
    binary = binarize(mask)
    return float(np.count_nonzero(binary)) / max(binary.size, 1)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) with exclusive ends, or None for an empty mask."""
    binary = binarize(mask)
    ys = np.flatnonzero(binary.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(binary.any(axis=0))
    return (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)


def elongation(mask: np.ndarray) -> float:
    """Major / minor axis ratio from the second moments (1.0 for a disc, large for a line).

    A one-pixel-wide line has a zero minor moment; the pixel's own extent (1/12 per axis)
    is added so the ratio stays finite and a lone pixel counts as round.
    """
    moments = cv2.moments(binarize(mask), binaryImage=True)
    if moments["m00"] == 0:
        return 1.0
    mu20 = moments["mu20"] / moments["m00"] + 1 / 12
    mu02 = moments["mu02"] / moments["m00"] + 1 / 12
    mu11 = moments["mu11"] / moments["m00"]
    spread = math.sqrt(((mu20 - mu02) / 2) ** 2 + mu11**2)
    major = (mu20 + mu02) / 2 + spread
    minor = max((mu20 + mu02) / 2 - spread, 1e-12)
    return math.sqrt(major / minor)


def centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) mean of the mask pixels, or None when empty."""
    ys, xs = np.nonzero(binarize(mask))
    if xs.size == 0:
        return None
    return (float(xs.mean()), float(ys.mean()))


def polygons(mask: np.ndarray, *, simplify: float = 0.0) -> list[np.ndarray]:
    """Outer outlines of the regions as (N, 2) int32 arrays of (x, y) points.

    ``simplify`` is the Douglas-Peucker tolerance in pixels (0 keeps every point).
    """
    contours, _ = cv2.findContours(binarize(mask), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    result = []
    for contour in contours:
        if simplify > 0:
            contour = cv2.approxPolyDP(contour, simplify, True)
        result.append(contour.reshape(-1, 2).astype(np.int32))
    return result


def outline(mask: np.ndarray, *, thickness: int = 1) -> np.ndarray:
    """uint8 0/1 mask of the region borders (inside edge), e.g. for drawing over an image."""
    binary = binarize(mask)
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    return binary - cv2.erode(binary, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)


@dataclass(frozen=True)
class Region:
    """One connected anomalous region, measured in full-image coordinates."""

    area_px: int
    area_fraction: float
    bbox: tuple[int, int, int, int]
    """(x0, y0, x1, y1), exclusive ends."""
    centroid: tuple[float, float]
    elongation: float
    fill: float
    """area / bbox area: low for thin diagonal or ragged shapes."""
    cell: Cell
    """Grid cell holding the largest part of this region."""
    peak: float | None = None
    """Highest map value inside the region (None when analysed from a mask alone)."""
    mean: float | None = None

    @property
    def location(self) -> str:
        return grid_words(self.cell)


def downsample_factor(shape: tuple[int, int], max_side: int) -> int:
    """Integer block size that brings the longer side to at most ``max_side``."""
    return max(1, math.ceil(max(shape) / max_side))


def max_pool(values: np.ndarray, factor: int) -> np.ndarray:
    """Block maximum: keeps every peak and every mask pixel (a tiny pit stays visible).

    A forward-anchored dilation followed by striding is several times faster than a numpy
    reshape-max, which matters at hundreds of maps a second.
    """
    if factor == 1:
        return values
    kernel = np.ones((factor, factor), np.uint8)
    dilated = cv2.dilate(values, kernel, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(dilated[::factor, ::factor])


def analyze_regions(
    mask: np.ndarray,
    anomaly_map: np.ndarray | None = None,
    *,
    max_side: int = 256,
    min_area_px: int = 1,
    exact_below_px: int = 128 * 128,
) -> list[Region]:
    """Connected regions of ``mask``, largest first, with shape and grid-location facts.

    Large masks are analysed on a block-max downsampled copy (long side <= ``max_side``)
    for speed. Regions whose box is under ``exact_below_px`` pixels are then measured on
    their own full-resolution pixels (exact area and shape); larger ones keep the block
    estimate, rescaled so the block areas add up to the full-resolution mask area. The
    image-level location should come from :func:`dominant_cell` on the full mask.
    ``anomaly_map`` (same shape) adds each region's peak and mean.
    """
    full = binarize(mask)
    if anomaly_map is not None and anomaly_map.shape != full.shape:
        raise UserError(
            f"mask shape {full.shape} does not match anomaly map shape {anomaly_map.shape}"
        )
    total_full = int(np.count_nonzero(full))
    if total_full == 0:
        return []
    factor = downsample_factor(full.shape, max_side)
    small = max_pool(full, factor)
    values = None
    if anomaly_map is not None:
        pooled = max_pool(np.asarray(anomaly_map, dtype=np.float32), factor)
        values = np.nan_to_num(pooled, nan=-np.inf)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(small, connectivity=8)
    block_total = int(stats[1:, cv2.CC_STAT_AREA].sum())
    scale = total_full / block_total
    image_px = full.size
    rows = band_edges(full.shape[0])
    cols = band_edges(full.shape[1])
    regions = []
    for label in range(1, count):
        x, y, w, h, blocks = (int(v) for v in stats[label])
        crop = labels[y : y + h, x : x + w] == label
        box = (
            x * factor,
            y * factor,
            min((x + w) * factor, full.shape[1]),
            min((y + h) * factor, full.shape[0]),
        )
        if factor > 1 and (box[2] - box[0]) * (box[3] - box[1]) <= exact_below_px:
            # small region: measure its own full-resolution pixels, so a short scratch is
            # not rounded into a square block and its area is exact
            member = np.repeat(np.repeat(crop, factor, axis=0), factor, axis=1)
            shape = member[: box[3] - box[1], : box[2] - box[0]]
            pixels = full[box[1] : box[3], box[0] : box[2]].astype(bool) & shape
            ys, xs = np.nonzero(pixels)
            ys, xs = ys + box[1], xs + box[0]
            area = int(ys.size)
            shape_mask = pixels.view(np.uint8)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        else:
            by, bx = np.nonzero(crop)
            # full-resolution centres of the blocks, so grid bands compare in image pixels
            ys = (by + y) * factor + (factor - 1) / 2
            xs = (bx + x) * factor + (factor - 1) / 2
            area = round(blocks * scale)
            shape_mask = crop.view(np.uint8)
        if area < min_area_px:
            continue
        row_idx = np.searchsorted(rows[1:3], ys, side="right")
        col_idx = np.searchsorted(cols[1:3], xs, side="right")
        cell_flat = int(np.argmax(np.bincount(row_idx * 3 + col_idx, minlength=9)))
        peak = mean = None
        if values is not None:
            inside = values[y : y + h, x : x + w][crop]
            peak, mean = float(inside.max()), float(inside.mean(dtype=np.float64))
        box_area = max((box[2] - box[0]) * (box[3] - box[1]), 1)
        regions.append(
            Region(
                area_px=area,
                area_fraction=area / image_px,
                bbox=box,
                centroid=(float(xs.mean()), float(ys.mean())),
                elongation=elongation(shape_mask),
                fill=min(area / box_area, 1.0),
                cell=(cell_flat // 3, cell_flat % 3),
                peak=peak,
                mean=mean,
            )
        )
    regions.sort(key=lambda r: r.area_px, reverse=True)
    return regions
