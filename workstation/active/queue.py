"""The review queue: priorities for a product's unreviewed images, written to the store.

The strategies need an embedding per image. By default it is the image's newest anomaly
map pooled to a small grid plus its score: free (the map is already stored), and it places
images with anomalies in the same place, or equally clean images, close together. A
caller with a backbone at hand can pass a richer ``embed`` function instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from workstation.active.strategies import (
    Candidates,
    order_to_priorities,
    reliability,
    review_order,
    verdict_disagreement,
)
from workstation.core.types import ImageRecord
from workstation.experts.fusion import CALIBRATED_THRESHOLD

if TYPE_CHECKING:
    from workstation.store.repository import Store

DECISIVE = ("accepted", "normal", "anomalous")
MAP_GRID = 8
DEFAULT_BUDGET = 16
Embed = Callable[[ImageRecord], np.ndarray]


def pooled_map(heat: np.ndarray, grid: int = MAP_GRID) -> np.ndarray:
    """Block means of an anomaly map on a ``grid`` x ``grid`` raster (aspect ignored)."""
    small = cv2.resize(heat.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
    return small.ravel().astype(np.float64)


def compute_priorities(
    image_ids: Sequence[int],
    scores: Sequence[float],
    *,
    threshold: float,
    embeddings: np.ndarray,
    reviewed_embeddings: np.ndarray,
    disagreement: np.ndarray | None = None,
    trust: float = 0.0,
    strategy: str = "mixed",
    budget: int = DEFAULT_BUDGET,
) -> dict[int, float]:
    """Pure: image id -> priority (1.0 = review first) for the scored unreviewed images."""
    if not image_ids:
        return {}
    candidates = Candidates(
        scores=np.asarray(scores, dtype=np.float64),
        threshold=threshold,
        embeddings=embeddings,
        reviewed_embeddings=reviewed_embeddings,
        disagreement=disagreement,
        trust=trust,
    )
    order = review_order(strategy, candidates, budget=budget)
    priorities = order_to_priorities(order)
    return {int(i): float(p) for i, p in zip(image_ids, priorities, strict=True)}


def _map_embedding(store: Store, image_id: int, score: float) -> np.ndarray:
    prediction = store.latest_prediction(image_id)
    if prediction is None or prediction.map_blob is None:
        return np.concatenate([np.full(MAP_GRID * MAP_GRID, score), [score]])
    return np.concatenate([pooled_map(store.load_map(prediction)), [score]])


def refresh_queue(
    store: Store,
    product: str | int,
    *,
    strategy: str = "mixed",
    budget: int = DEFAULT_BUDGET,
    embed: Embed | None = None,
    vlm_verdicts: Mapping[int, bool] | None = None,
) -> dict[int, float]:
    """Recompute and store the priorities of ``product``'s unreviewed, scored images.

    The threshold is the product's calibrated one (scores are calibrated so that 1.0 is
    the threshold when none is stored). Images not scored yet get no priority and sort
    last. ``vlm_verdicts`` (image id -> anomalous) adds verdict disagreement with the
    experts. Trust in the scores comes from the reviewed images (their newest scores
    against the inspectors' verdicts). Returns the priorities written.
    """
    record = store.get_product(product)
    rows = [
        r for r in store.query_images(record.id, review_state="unreviewed") if r.score is not None
    ]
    reviewed = store.query_images(record.id, review_state="reviewed")

    def embedding(image: ImageRecord, score: float) -> np.ndarray:
        return embed(image) if embed is not None else _map_embedding(store, image.id, score)

    embeddings = np.array([embedding(r.image, float(r.score or 0.0)) for r in rows])
    reviewed_embeddings = np.array(
        [embedding(r.image, float(r.score or 0.0)) for r in reviewed]
    ).reshape(-1, embeddings.shape[1] if rows else 0)
    judged = [r for r in reviewed if r.score is not None and r.review_verdict in DECISIVE]
    trust = reliability(
        [float(r.score or 0.0) for r in judged],
        [
            r.review_verdict == "anomalous"
            or (r.review_verdict == "accepted" and bool(r.anomalous))
            for r in judged
        ],
    )
    disagreement = None
    if vlm_verdicts:
        disagreement = verdict_disagreement(
            [vlm_verdicts.get(r.image.id) for r in rows], [r.anomalous for r in rows]
        )
    priorities = compute_priorities(
        [r.image.id for r in rows],
        [float(r.score or 0.0) for r in rows],
        threshold=record.threshold if record.threshold is not None else CALIBRATED_THRESHOLD,
        embeddings=embeddings.reshape(len(rows), -1),
        reviewed_embeddings=reviewed_embeddings,
        disagreement=disagreement,
        trust=trust,
        strategy=strategy,
        budget=budget,
    )
    store.set_priorities(record.id, priorities)
    return priorities
