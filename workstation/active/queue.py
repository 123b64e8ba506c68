"""The review queue: priorities for a product's unreviewed images, and why, written to the store.

The default order (``strategies.DEFAULT_STRATEGY``) needs only the fused scores. The
coverage orders (``strategies.NEEDS_EMBEDDINGS``) need an embedding per image: the one the
few-shot expert kept with the image's newest prediction (mean and spread of its patch
features: what the image looks like). Images predicted before embeddings were kept fall
back, all together, to their anomaly map pooled to a small grid plus the score. The
disagreement order reads each expert's own score, kept with the prediction too.

Each priority is stored with its reason in words (``strategies.REASONS``), so the review
list only reads it: the inspector sees "likely defect" or "unlike reviewed" next to the
image, not a bare number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from workstation.active.strategies import (
    DEFAULT_STRATEGY,
    NEEDS_EMBEDDINGS,
    REASONS,
    Candidates,
    order_to_priorities,
    review_order,
)
from workstation.core.types import Prediction

if TYPE_CHECKING:
    from workstation.store.repository import Store
    from workstation.store.rows import ImageRow

MAP_GRID = 8
DEFAULT_BUDGET = 16


@dataclass(frozen=True)
class Queue:
    priorities: dict[int, float]
    """Image id -> priority (1.0 = review first)."""
    reasons: dict[int, str]
    """Image id -> why it is there, in the words the review list shows."""


def pooled_map(heat: np.ndarray, grid: int = MAP_GRID) -> np.ndarray:
    """Block means of an anomaly map on a ``grid`` x ``grid`` raster (aspect ignored)."""
    small = cv2.resize(heat.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
    return small.ravel().astype(np.float64)


def shared_expert_scores(
    predictions: Sequence[Prediction | None],
) -> dict[str, np.ndarray]:
    """Per expert, its score on every candidate: only experts that scored all of them
    (images predicted before a new expert joined cannot be ranked by it)."""
    known = [p.expert_scores if p is not None else {} for p in predictions]
    if not known:
        return {}
    names = set(known[0]).intersection(*known[1:])
    return {name: np.array([k[name] for k in known]) for name in sorted(names)}


def compute_queue(
    image_ids: Sequence[int],
    candidates: Candidates,
    *,
    strategy: str = DEFAULT_STRATEGY,
    budget: int = DEFAULT_BUDGET,
) -> Queue:
    """Pure: the order the strategy gives the candidates, as priorities and reasons."""
    if not image_ids:
        return Queue({}, {})
    ordered = review_order(strategy, candidates, budget=budget)
    priorities = order_to_priorities(ordered.order)
    return Queue(
        priorities={int(i): float(p) for i, p in zip(image_ids, priorities, strict=True)},
        reasons={
            int(i): REASONS[code] for i, code in zip(image_ids, ordered.reasons, strict=True)
        },
    )


def _map_embedding(prediction: Prediction | None, store: Store, score: float) -> np.ndarray:
    if prediction is None or prediction.map_blob is None:
        return np.concatenate([np.full(MAP_GRID * MAP_GRID, score), [score]])
    return np.concatenate([pooled_map(store.load_map(prediction)), [score]])


def embeddings_of(
    store: Store,
    rows: Sequence[ImageRow],
    predictions: Sequence[Prediction | None],
) -> np.ndarray:
    """One row per image: the kept embeddings when every image has one of one size, else
    pooled maps (mixing kinds would make distances meaningless)."""
    kept = [p.embedding if p is not None else None for p in predictions]
    sizes = {e.size for e in kept if e is not None}
    if kept and all(e is not None for e in kept) and len(sizes) == 1:
        return np.stack(kept)  # type: ignore[arg-type]
    return np.array(
        [
            _map_embedding(p, store, float(r.score or 0.0))
            for r, p in zip(rows, predictions, strict=True)
        ]
    ).reshape(len(rows), -1)


def refresh_queue(
    store: Store,
    product: str | int,
    *,
    strategy: str = DEFAULT_STRATEGY,
    budget: int = DEFAULT_BUDGET,
) -> Queue:
    """Recompute and store the priorities (and reasons) of ``product``'s unreviewed, scored
    images.

    The threshold is the product's calibrated one (scores are calibrated so that 1.0 is
    the threshold when none is stored). Images not scored yet get no priority and sort
    last. Embeddings (and, without them, the anomaly maps) are read only for an order
    that uses them: for a large product that is most of the work.
    """
    record = store.get_product(product)
    rows = [
        r for r in store.query_images(record.id, review_state="unreviewed") if r.score is not None
    ]
    predictions = [store.latest_prediction(r.image.id) for r in rows]
    embeddings = reviewed_embeddings = None
    if strategy in NEEDS_EMBEDDINGS:
        reviewed = store.query_images(record.id, review_state="reviewed")
        known = predictions + [store.latest_prediction(r.image.id) for r in reviewed]
        # one call for both, so candidates and reviewed images are embedded the same way
        together = embeddings_of(store, rows + reviewed, known)
        embeddings, reviewed_embeddings = together[: len(rows)], together[len(rows) :]
    candidates = Candidates(
        scores=np.array([float(r.score or 0.0) for r in rows]),
        threshold=record.decision_threshold,
        embeddings=embeddings,
        reviewed_embeddings=reviewed_embeddings,
        expert_scores=shared_expert_scores(predictions),
    )
    queue = compute_queue(
        [r.image.id for r in rows], candidates, strategy=strategy, budget=budget
    )
    store.set_priorities(record.id, queue.priorities, queue.reasons)
    return queue
