"""Inspecting a product's stored images with its active expert version.

Batched (one pipeline call and one store transaction per batch), resumable (images that
already have a prediction for this model version are skipped, so an interrupted run
continues where it stopped), cancellable between batches (``cancel`` event) and reporting
progress. If the product has no usable active ``experts`` version, or a trained model
(adapter, self-taught network) changed since, the experts are fitted first
(``onboard.fit_product``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workstation.config import ExpertSettings
from workstation.core.errors import CancelledError, UserError
from workstation.core.types import ImageRecord, ModelVersion, Product
from workstation.experts.base import ProgressFn
from workstation.experts.pipeline import InspectionPipeline, trained_folders
from workstation.experts.tiled import Shape
from workstation.services.large_scoring import Scored, route, score_stored_tiled, shot_shape
from workstation.services.onboard import fit_product, read_for_experts, trained_model_paths
from workstation.store.repository import Store
from workstation.store.rows import NewPrediction

DEFAULT_BATCH = 8


@dataclass(frozen=True)
class InspectReport:
    product: str
    model_version: str
    total: int
    predicted: int
    skipped: int
    anomalous: int
    failed: tuple[tuple[int, str], ...] = ()
    """(image id, reason) for images that could not be read; the rest went on."""


def load_active_pipeline(
    store: Store,
    product: Product,
    settings: ExpertSettings,
    *,
    device: str = "cpu",
    refit: bool = False,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> tuple[ModelVersion, InspectionPipeline]:
    """The product's active experts version, loaded; fitted anew when missing or stale.

    Fitting happens under the store's fit lock, and the active version is looked at
    again once the lock is held: two inspections started together fit once, the second
    one loads what the first one fitted.
    """
    if not refit and (found := _usable_active(store, product)) is not None:
        return found, _load(store, found, product, device)
    with store.fit_lock(product.id, "experts", cancel=cancel):
        if not refit and (found := _usable_active(store, product)) is not None:
            return found, _load(store, found, product, device)
        return fit_product(store, product, settings, device=device, progress=progress)


def _usable_active(store: Store, product: Product) -> ModelVersion | None:
    """The active experts version unless it must be refitted: none yet, its folder gone,
    fitted before models lived in the store (unhashed), or a trained model (adapter,
    self-taught network) changed since."""
    active = store.active_model_version(product.id, "experts")
    if active is None or active.path is None or not Path(active.path).is_dir():
        return None
    if active.files_sha256 is None:
        return None
    if trained_folders(active.config) != trained_model_paths(store, product):
        return None
    return active


def _load(store: Store, version: ModelVersion, product: Product, device: str) -> InspectionPipeline:
    return InspectionPipeline.load(store.model_files(version), product=product, device=device)


def inspect_product(
    store: Store,
    product_name: str,
    settings: ExpertSettings,
    *,
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH,
    refit: bool = False,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    tile_progress: Callable[[int, int], None] | None = None,
) -> InspectReport:
    """Predict every not-yet-predicted image of the product; see the module docstring.

    A very large image is scored in tiles (``large_scoring``), alone, and stored once it
    is whole; ``tile_progress(done, total)`` hears its tiles. Raises CancelledError when
    ``cancel`` is set (between batches, or between a large image's tiles); predictions
    written so far are kept.
    """
    if batch_size < 1:
        raise UserError("batch size must be at least 1")
    product = store.get_product(product_name)
    version, pipeline = load_active_pipeline(
        store, product, settings, device=device, refit=refit, cancel=cancel
    )
    records = store.list_images(product.id)
    done = store.predicted_image_ids(product.id, version.name)
    todo = [r for r in records if r.id not in done]
    total = len(todo)
    predicted = anomalous = 0
    failed: list[tuple[int, str]] = []
    shot: Shape | None = None
    if progress:
        progress(0, total)
    for start in range(0, total, batch_size):
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"inspection of {product.name} cancelled")
        batch = todo[start : start + batch_size]
        images: list[np.ndarray] = []
        kept = []
        scored: list[tuple[ImageRecord, Scored]] = []
        for record in batch:
            try:
                if route(record.width, record.height, name=record.path) == "tiled":
                    shot = shot or shot_shape(store, product)
                    result = score_stored_tiled(
                        store,
                        record,
                        pipeline,
                        product,
                        shot=shot,
                        progress=tile_progress,
                        cancel=cancel,
                    )
                    scored.append((record, result))
                    continue
                images.append(read_for_experts(store, record, settings.image_size))
                kept.append(record)
            except UserError as exc:
                failed.append((record.id, str(exc)))
        if images:
            results = pipeline.predict_detailed(images)
            scored += [
                (record, Scored.whole(fused, experts, (record.width, record.height)))
                for record, (fused, experts) in zip(kept, results, strict=True)
            ]
        entries = [_prediction(record, version, product, result) for record, result in scored]
        if entries:
            store.add_predictions(entries)
            predicted += len(entries)
            anomalous += sum(e.anomalous for e in entries)
        if progress:
            progress(min(start + batch_size, total), total)
    return InspectReport(
        product=product.name,
        model_version=version.name,
        total=len(records),
        predicted=predicted,
        skipped=len(records) - total,
        anomalous=anomalous,
        failed=tuple(failed),
    )


def _prediction(
    record: ImageRecord, version: ModelVersion, product: Product, result: Scored
) -> NewPrediction:
    return NewPrediction(
        image_id=record.id,
        model_version=version.name,
        score=result.fused.score,
        # judged at the product's threshold, which an engineer may have moved
        anomalous=bool(result.fused.score >= product.decision_threshold),
        anomaly_map=result.fused.map.astype(np.float16),
        expert_scores=result.expert_scores,
        embedding=result.embedding,
    )
