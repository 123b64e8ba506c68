"""Scoring a very large image (a 20000 x 20000 scan) at the detail its product was fitted at,
tile by tile, in bounded memory.

Shrunk whole to the experts' working size (512 px), such a scan loses every defect under
about 40 px. Here it is cut into tiles that look like the product's normal shots: the
pyramid level (``core.raster``) closest above the scale at which the shots were fitted
(a 1024 px shot seen at 256 px: level 2, a quarter of full resolution) is cut into tiles
of the shot's size at that level, overlapping by a quarter so that a defect on a seam is
whole in at least one tile, and each tile goes through the product's fitted pipeline as a
shot would. The tiles' maps, less the strip along each inner edge that a neighbour sees
in context (patches at a tile's edge see the edge, not the surface around them, and
scored there raised false regions along every seam), are max-pooled into one map of at
most ``MAP_SIDE`` px on the long side (where kept parts overlap, the stronger evidence
wins). The image's score is its highest tile's, and the regions above the threshold are
given as boxes in full-resolution pixels.

Memory is one batch of tiles, their maps and the stitched map, whatever the image: the
pyramid's levels are read-only memory maps, and nothing is written here (the caller
stores the result once it is whole, so a cancelled run leaves nothing half-written).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from workstation.core import masks
from workstation.core.errors import CancelledError, UserError
from workstation.core.raster import Raster
from workstation.core.types import AnomalyMap
from workstation.experts.base import ProgressFn
from workstation.experts.features import working_shape
from workstation.experts.pipeline import InspectionPipeline

MAP_SIDE = 2048
"""Long side of the stitched map at most: what is stored and drawn over the scan."""
OVERLAP = 0.25
"""Share of a tile its neighbour covers too."""
BATCH = 4
"""Tiles per pipeline call: faster than one at a time, a few MB of memory."""

Shape = tuple[int, int]


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image lie: all in ``level`` pixels, each ``tile`` (h, w)."""

    level: int
    level_shape: Shape
    tile: Shape
    origins: tuple[Shape, ...]
    """(y, x) of each tile's top-left corner, row by row."""
    margin: Shape = (0, 0)
    """(rows, columns) of a tile's map dropped where a neighbour overlaps it: half the
    overlap, so the kept parts still cover the image."""

    def kept(self, origin: Shape) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the part of the tile at ``origin`` whose map is
        used, in tile pixels: all of it along the image's border, elsewhere without the
        margin, where the patches see the tile's edge instead of the surface around
        them (the neighbour sees that strip away from its edge)."""
        (y, x), (h, w) = origin, self.tile
        height, width = self.level_shape
        return (
            self.margin[0] if y > 0 else 0,
            self.margin[1] if x > 0 else 0,
            h - (self.margin[0] if y + h < height else 0),
            w - (self.margin[1] if x + w < width else 0),
        )


@dataclass(frozen=True)
class TiledScore:
    """The result of scoring one large image in tiles."""

    fused: AnomalyMap
    """Stitched map (long side at most ``MAP_SIDE``), score = the highest tile's."""
    expert_scores: dict[str, float]
    """Each expert's highest tile score."""
    embedding: np.ndarray | None
    """The highest-scoring tile's embedding (what the image is flagged for)."""
    regions: tuple[masks.Region, ...]
    """Regions at or above the threshold, boxes and areas in full-resolution pixels."""
    plan: TilePlan
    full_size: tuple[int, int]
    """(width, height) at full resolution."""

    @property
    def tiles(self) -> int:
        return len(self.plan.origins)


def starts(length: int, tile: int, overlap: float = OVERLAP) -> list[int]:
    """Tile starts along one side: stride ``tile * (1 - overlap)``, the last tile moved back
    to end at the border (so no tile is cut short and none hangs over the edge)."""
    if tile >= length:
        return [0]
    step = stride(tile, overlap)
    count = math.ceil((length - tile) / step) + 1
    return [min(i * step, length - tile) for i in range(count)]


def stride(tile: int, overlap: float = OVERLAP) -> int:
    """Distance between the starts of neighbouring tiles."""
    return max(1, round(tile * (1 - overlap)))


def choose_level(level_shapes: Sequence[Shape], scale: float) -> int:
    """The coarsest level that is still at least as sharp as ``scale`` (full-resolution
    pixels per working pixel): its tiles are shrunk to the working size, never enlarged."""
    full_h, full_w = level_shapes[0]
    level = 0
    for k, (h, w) in enumerate(level_shapes):
        if max(full_h / h, full_w / w) <= scale * 1.001:
            level = k
    return level


def plan_tiles(
    level_shapes: Sequence[Shape], shot: Shape, working: Shape, *, overlap: float = OVERLAP
) -> TilePlan:
    """The tiles of an image whose pyramid levels have ``level_shapes`` (h, w) for a
    product fitted on shots of ``shot`` (h, w) full-resolution pixels, seen by its experts
    at ``working`` (h, w)."""
    if min(shot) < 1 or min(working) < 1:
        raise UserError(f"cannot cut tiles for shots of {shot} seen at {working}")
    scale = math.sqrt(shot[0] * shot[1] / (working[0] * working[1]))
    level = choose_level(level_shapes, max(scale, 1.0))
    height, width = level_shapes[level]
    down = (level_shapes[0][0] / height, level_shapes[0][1] / width)
    tile = (
        max(1, min(height, round(shot[0] / down[0]))),
        max(1, min(width, round(shot[1] / down[1]))),
    )
    origins = tuple(
        (y, x) for y in starts(height, tile[0], overlap) for x in starts(width, tile[1], overlap)
    )
    margin = ((tile[0] - stride(tile[0], overlap)) // 2, (tile[1] - stride(tile[1], overlap)) // 2)
    return TilePlan(
        level=level, level_shape=(height, width), tile=tile, origins=origins, margin=margin
    )


def pipeline_working_shape(pipeline: InspectionPipeline, shot: Shape) -> Shape:
    """(h, w) at which ``pipeline``'s experts see a shot: the few-shot bank's own shape when
    it has one, else what a fit on shots of ``shot`` would have chosen."""
    bank = pipeline.bank_expert()
    if bank is not None and bank.shape is not None:
        return bank.shape
    return working_shape([shot], image_size=pipeline.config.fewshot.image_size, multiple=1)


class _Stitcher:
    """Max-pools tile maps (level pixels) into one map of at most ``map_side`` px."""

    def __init__(self, level_shape: Shape, map_side: int) -> None:
        self.factor = min(1.0, map_side / max(level_shape))
        shape = (
            max(1, min(map_side, round(level_shape[0] * self.factor))),
            max(1, min(map_side, round(level_shape[1] * self.factor))),
        )
        self.map = np.full(shape, -np.inf, np.float32)
        self.pool = max(1, math.ceil(1 / self.factor - 1e-9))

    def add(self, origin: Shape, values: np.ndarray) -> None:
        (y, x), (h, w) = origin, values.shape
        y0, x0 = math.floor(y * self.factor), math.floor(x * self.factor)
        y1 = min(self.map.shape[0], max(y0 + 1, math.ceil((y + h) * self.factor)))
        x1 = min(self.map.shape[1], max(x0 + 1, math.ceil((x + w) * self.factor)))
        # Block maximum down to at most the footprint, so a defect a few pixels wide
        # keeps its peak; then a mild enlargement (under 2x) onto the footprint.
        pooled = masks.max_pool(np.ascontiguousarray(values, np.float32), self.pool)
        resized = cv2.resize(pooled, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        window = self.map[y0:y1, x0:x1]
        np.maximum(window, resized, out=window)

    def result(self) -> np.ndarray:
        unset = ~np.isfinite(self.map)
        if unset.any():  # only where rounding left a seam: the lowest value found
            self.map[unset] = float(self.map[~unset].min()) if (~unset).any() else 0.0
        return self.map


def full_resolution(
    region: masks.Region, sx: float, sy: float, size: tuple[int, int]
) -> masks.Region:
    """A region found on the stitched map, in full-resolution pixels (``sx``, ``sy``:
    full-resolution pixels per map pixel; ``size``: (width, height))."""
    x0, y0, x1, y1 = region.bbox
    box = (
        math.floor(x0 * sx),
        math.floor(y0 * sy),
        min(size[0], math.ceil(x1 * sx)),
        min(size[1], math.ceil(y1 * sy)),
    )
    cx, cy = region.centroid
    return replace(
        region,
        bbox=box,
        centroid=((cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5),
        area_px=round(region.area_px * sx * sy),
    )


def score_tiled(
    raster: Raster,
    pipeline: InspectionPipeline,
    *,
    shot: Shape,
    threshold: float,
    overlap: float = OVERLAP,
    map_side: int = MAP_SIDE,
    batch: int = BATCH,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> TiledScore:
    """Score the image of ``raster`` in tiles (see the module docstring).

    ``shot`` is the (h, w) in full-resolution pixels of the product's normal shots;
    ``threshold`` (the product's, in the fused map's units) marks the regions.
    ``progress(done, total)`` hears every tile; a set ``cancel`` raises CancelledError
    between batches.
    """
    shapes = [tuple(level.shape[:2]) for level in raster.levels]
    plan = plan_tiles(shapes, shot, pipeline_working_shape(pipeline, shot), overlap=overlap)
    stitcher = _Stitcher(plan.level_shape, map_side)
    total = len(plan.origins)
    best = -math.inf
    expert_scores: dict[str, float] = {}
    embedding = None
    name = "fused"
    if progress:
        progress(0, total)
    step = max(1, batch)
    for start in range(0, total, step):
        if cancel is not None and cancel.is_set():
            raise CancelledError("tiled scoring cancelled")
        origins = plan.origins[start : start + step]
        tiles = [
            raster.region(plan.level, x, y, x + plan.tile[1], y + plan.tile[0]) for y, x in origins
        ]
        for done, (origin, (fused, experts)) in enumerate(
            zip(origins, pipeline.predict_detailed(tiles), strict=True), start=start + 1
        ):
            top, left, bottom, right = plan.kept(origin)
            stitcher.add((origin[0] + top, origin[1] + left), fused.map[top:bottom, left:right])
            name = fused.expert or name
            for expert, output in experts.items():
                expert_scores[expert] = max(expert_scores.get(expert, -math.inf), output.score)
            if fused.score > best:
                best = fused.score
                embedding = next(
                    (m.embedding for m in experts.values() if m.embedding is not None), None
                )
            if progress:
                progress(done, total)
    stitched = stitcher.result()
    width, height = raster.size
    sx, sy = width / stitched.shape[1], height / stitched.shape[0]
    found = masks.analyze_regions(
        masks.mask_from_map(stitched, threshold), stitched, max_side=max(stitched.shape)
    )
    return TiledScore(
        fused=AnomalyMap(stitched, score=best, threshold=threshold, expert=name),
        expert_scores=expert_scores,
        embedding=embedding,
        regions=tuple(full_resolution(r, sx, sy, (width, height)) for r in found),
        plan=plan,
        full_size=(width, height),
    )
