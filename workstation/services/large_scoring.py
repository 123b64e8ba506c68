"""How an image is scored, by its size: refused, read whole, or scored in tiles.

Decided from the header alone, before a pixel is decoded: above ``[limits]
max_image_megapixels`` an image is refused with one line; above ``LARGE_PIXELS`` (50 MP,
where the app stops decoding images itself) it is scored in tiles of its pyramid
(``experts.tiled``), at the detail the product's normal shots were fitted at; anything
smaller is read whole and scored as a shot. Used by ``inspect`` (stored images, the
GUI's scoring job) and ``inspect IMAGE`` (files outside the store), so a scan is scored
the same way wherever it comes from.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from workstation.core.errors import UserError
from workstation.core.imageio import (
    LARGE_PIXELS,
    ImageReadError,
    pixel_problem,
    read_image,
    stored_size,
)
from workstation.core.masks import Region
from workstation.core.raster import Raster, ensure_raster, scratch_raster, tiles_folder
from workstation.core.types import AnomalyMap, ImageRecord, Product
from workstation.experts.base import ProgressFn
from workstation.experts.pipeline import InspectionPipeline
from workstation.experts.tiled import MAP_SIDE, Shape, score_tiled
from workstation.services.onboard import MAX_FIT_NORMALS, normal_images
from workstation.store.repository import Store

Route = Literal["whole", "tiled"]


def route(width: int, height: int, *, name: str) -> Route:
    """How an image of ``width`` x ``height`` is scored; refused (one line) above the limit."""
    problem = pixel_problem(width, height)
    if problem is not None:
        raise ImageReadError(f"{name}: {problem}")
    return "tiled" if width * height > LARGE_PIXELS else "whole"


def shot_shape(store: Store, product: Product) -> Shape:
    """(h, w) of the product's normal shots (the median of those a fit reads): the scale
    its experts learned what normal looks like at, so a tile of a scan must look the same."""
    records = [r for r in normal_images(store, product)[:MAX_FIT_NORMALS] if r.width * r.height > 0]
    if not records:
        raise UserError(
            f"product {product.name!r} has no normal images to tell the scale of its shots; "
            "import some labelled good, then score the large image again"
        )
    return (
        int(np.median([r.height for r in records])),
        int(np.median([r.width for r in records])),
    )


@dataclass(frozen=True)
class Scored:
    """One image's result, however it was scored."""

    fused: AnomalyMap
    expert_scores: dict[str, float]
    embedding: np.ndarray | None
    size: tuple[int, int]
    """(width, height) at full resolution."""
    tiles: int = 0
    """Tiles scored (0: read whole)."""
    regions: tuple[Region, ...] = ()
    """Tiled only: regions above the threshold, in full-resolution pixels."""

    @classmethod
    def whole(
        cls, fused: AnomalyMap, experts: dict[str, AnomalyMap], size: tuple[int, int]
    ) -> Scored:
        """The result of one ``predict_detailed`` image."""
        return cls(
            fused=fused,
            expert_scores={name: m.score for name, m in experts.items()},
            embedding=next(
                (m.embedding for m in experts.values() if m.embedding is not None), None
            ),
            size=size,
        )


def _tiled(
    raster: Raster,
    pipeline: InspectionPipeline,
    product: Product,
    *,
    shot: Shape,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> Scored:
    result = score_tiled(
        raster,
        pipeline,
        shot=shot,
        threshold=product.decision_threshold,
        progress=progress,
        cancel=cancel,
    )
    return Scored(
        fused=result.fused,
        expert_scores=result.expert_scores,
        embedding=result.embedding,
        size=result.full_size,
        tiles=result.tiles,
        regions=result.regions,
    )


def score_stored_tiled(
    store: Store,
    record: ImageRecord,
    pipeline: InspectionPipeline,
    product: Product,
    *,
    shot: Shape,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> Scored:
    """A stored large image, in tiles of its pyramid (built beside the store, kept: the
    review window shows the image from it)."""
    route(record.width, record.height, name=record.path)
    raster = ensure_raster(record.path, tiles_folder(store.path, record.sha256))
    return _tiled(raster, pipeline, product, shot=shot, progress=progress, cancel=cancel)


def score_file(
    store: Store,
    path: Path,
    pipeline: InspectionPipeline,
    product: Product,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> Scored:
    """A file outside the store, scored by its size (see the module docstring). A large
    one's pyramid is built in a scratch folder beside the store and removed afterwards."""
    width, height = stored_size(path)
    if route(width, height, name=str(path)) == "whole":
        fused, experts = pipeline.predict_detailed([read_image(path)])[0]
        return Scored.whole(fused, experts, (width, height))
    shot = shot_shape(store, product)
    with scratch_raster(path, Path(f"{store.path}.tiles")) as raster:
        return _tiled(raster, pipeline, product, shot=shot, progress=progress, cancel=cancel)


def read_for_review(store: Store, record: ImageRecord) -> np.ndarray:
    """An image as an explanation looks at it: a large one as its pyramid's level of at
    most ``MAP_SIDE`` px (the size of its stored map), never decoded whole."""
    if record.width * record.height > LARGE_PIXELS:
        return ensure_raster(record.path, tiles_folder(store.path, record.sha256)).reduced(MAP_SIDE)
    return read_image(record.path)
