"""Which unreviewed images teach the models most: pure functions over numpy arrays.

Each signal returns one value per candidate image, larger = review sooner, in [0, 1]:

- ``uncertainty``: the calibrated score is near the threshold, so the verdict could go
  either way; the inspector's answer moves the boundary (a false alarm joins the normal
  memory, a faint defect gets a mask).
- ``map_disagreement`` / ``verdict_disagreement``: two experts (few-shot vs zero-shot
  maps, or the VLM's verdict vs the experts') do not agree; at least one is wrong.
- ``novelty``: far (in image-embedding space) from everything already reviewed, so no
  label yet covers that kind of appearance.
- ``k_center_greedy``: a batch that spreads over the embedding space instead of ten near
  copies of the same image.

``mixed_order`` combines them under a per-batch budget: each pick maximises its distance
to everything reviewed or picked (coverage) weighted by informativeness (uncertainty,
disagreement), in proportion to how reliable the model's scores have proven on reviewed
images: coverage first while the model is weak, uncertainty as it becomes trustworthy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STRATEGIES: tuple[str, ...] = ("mixed", "uncertainty", "novelty", "diversity", "random")


def _as_float(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()


def percentile_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Each value's rank among ``values`` scaled to [0, 1]; ties share their mean rank.

    Ranks compare experts (and rounds) whose scores are in different units.
    """
    v = _as_float(values)
    if v.size < 2:
        return np.full(v.size, 0.5)
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - counts + (counts - 1) / 2.0
    return mean_rank[inverse] / (v.size - 1)


def uncertainty(scores: Sequence[float] | np.ndarray, threshold: float) -> np.ndarray:
    """exp(-|score - threshold| / spread): 1 at the threshold, falling off with the margin.

    ``spread`` is the median absolute deviation of the scores around the threshold, so the
    signal adapts to each expert's units without a tuning constant.
    """
    s = _as_float(scores)
    if s.size == 0:
        return s
    margin = np.abs(s - threshold)
    spread = float(np.median(margin)) or 1.0
    return np.exp(-margin / spread)


def _normalise_map(heat: np.ndarray, size: int) -> np.ndarray:
    """Downsample to ``size`` cells per side (block means) and standardise (z-score)."""
    h, w = heat.shape
    rows = np.linspace(0, h, min(size, h) + 1).astype(int)
    cols = np.linspace(0, w, min(size, w) + 1).astype(int)
    small = np.add.reduceat(np.add.reduceat(heat.astype(np.float64), rows[:-1], 0), cols[:-1], 1)
    small /= np.outer(np.diff(rows), np.diff(cols))
    std = small.std()
    return (small - small.mean()) / std if std > 0 else np.zeros_like(small)


def map_disagreement(
    maps_a: Sequence[np.ndarray], maps_b: Sequence[np.ndarray], *, size: int = 32
) -> np.ndarray:
    """(1 - correlation) / 2 between two experts' maps of each image: 0 agree, 1 opposite.

    Correlation after standardising compares *where* each expert sees anomalies, ignoring
    their different units.
    """
    if len(maps_a) != len(maps_b):
        raise ValueError(f"{len(maps_a)} maps against {len(maps_b)}")
    out = np.empty(len(maps_a))
    for i, (a, b) in enumerate(zip(maps_a, maps_b, strict=True)):
        if a.shape != b.shape:
            raise ValueError(f"map shapes differ for image {i}: {a.shape} vs {b.shape}")
        za, zb = _normalise_map(a, size), _normalise_map(b, size)
        out[i] = (1.0 - float((za * zb).mean())) / 2.0
    return np.clip(out, 0.0, 1.0)


def verdict_disagreement(
    verdicts_a: Sequence[bool | None], verdicts_b: Sequence[bool | None]
) -> np.ndarray:
    """1 where both verdicts exist and differ, else 0 (a missing verdict is no evidence)."""
    if len(verdicts_a) != len(verdicts_b):
        raise ValueError(f"{len(verdicts_a)} verdicts against {len(verdicts_b)}")
    return np.array(
        [
            float(a is not None and b is not None and a != b)
            for a, b in zip(verdicts_a, verdicts_b, strict=True)
        ]
    )


def _distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point to its nearest centre (inf when no centres)."""
    if centres.size == 0:
        return np.full(points.shape[0], np.inf)
    sq = (points**2).sum(1)[:, None] - 2 * points @ centres.T + (centres**2).sum(1)[None, :]
    return np.sqrt(np.clip(sq, 0, None)).min(1)


def novelty(embeddings: np.ndarray, reviewed: np.ndarray) -> np.ndarray:
    """Distance to the nearest reviewed image, scaled to [0, 1] by the largest one."""
    points = np.asarray(embeddings, dtype=np.float64)
    if points.shape[0] == 0:
        return np.zeros(0)
    dist = _distances(points, np.asarray(reviewed, dtype=np.float64).reshape(-1, points.shape[1]))
    if not np.isfinite(dist).any():
        return np.ones(points.shape[0])
    top = float(dist.max())
    return dist / top if top > 0 else np.zeros_like(dist)


def k_center_greedy(
    embeddings: np.ndarray, budget: int, *, reviewed: np.ndarray | None = None, seed: int = 0
) -> list[int]:
    """Indices of ``budget`` images, each the farthest from all reviewed and chosen so far."""
    points = np.asarray(embeddings, dtype=np.float64)
    count = points.shape[0]
    budget = min(budget, count)
    centres = (
        np.zeros((0, points.shape[1])) if reviewed is None else np.asarray(reviewed, np.float64)
    )
    dist = _distances(points, centres.reshape(-1, points.shape[1]))
    chosen: list[int] = []
    if budget > 0 and not np.isfinite(dist).any():
        first = int(np.random.default_rng(seed).integers(count))
        chosen.append(first)
        dist = _distances(points, points[[first]])
    while len(chosen) < budget:
        pick = int(np.argmax(dist))
        chosen.append(pick)
        dist = np.minimum(dist, _distances(points, points[[pick]]))
    return chosen


@dataclass(frozen=True)
class MixWeights:
    """How much each signal counts in the mixed strategy (renormalised over those given)."""

    uncertainty: float = 0.7
    disagreement: float = 0.3


def informativeness(
    *,
    uncertainty_values: np.ndarray | None = None,
    disagreement_values: np.ndarray | None = None,
    weights: MixWeights = MixWeights(),
) -> np.ndarray:
    """Weighted mean of the signals that are available (missing ones do not dilute it)."""
    parts = [
        (weights.uncertainty, uncertainty_values),
        (weights.disagreement, disagreement_values),
    ]
    present = [(w, np.asarray(v, np.float64)) for w, v in parts if v is not None and w > 0]
    if not present:
        raise ValueError("informativeness needs at least one signal")
    total = sum(w for w, _ in present)
    return sum(w * v for w, v in present) / total


def reliability(scores: Sequence[float] | np.ndarray, anomalous: Sequence[bool]) -> float:
    """How far the model's scores can be trusted: 2 * AUROC - 1 on reviewed images, >= 0.

    Computed on scores the images had *when they were reviewed* (before their label could
    influence the model), so it is an honest validation estimate. 0 when one side is
    missing: with no evidence, the queue must not trust the scores.
    """
    s = _as_float(scores)
    labels = np.asarray(anomalous, dtype=bool)
    pos, neg = s[labels], s[~labels]
    if pos.size == 0 or neg.size == 0:
        return 0.0
    wins = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    return float(max(0.0, 2 * wins - 1))


def mixed_order(
    value: np.ndarray,
    embeddings: np.ndarray,
    *,
    reviewed: np.ndarray,
    trust: float,
    budget: int,
) -> list[int]:
    """All candidates in review order: a covering, informative batch of ``budget`` first.

    Each pick maximises ``d * ((1 - trust) + trust * value)``, where ``d`` is the distance
    to everything reviewed or already picked (coverage, as k-centre greedy) and ``value``
    the informativeness. ``trust`` (the model's reliability) moves the queue from pure
    coverage while the model's scores mean little (cold start: uncertainty of a bad model is
    noise) towards uncertainty-weighted coverage once reviews show the scores separate.
    After the batch, the rest follow by the same gain.
    """
    value = np.asarray(value, np.float64)
    points = np.asarray(embeddings, np.float64)
    count = value.size
    if points.shape[0] != count:
        raise ValueError(f"{count} values but {points.shape[0]} embeddings")
    if not 0.0 <= trust <= 1.0:
        raise ValueError(f"trust must be in [0, 1], got {trust}")
    weight = (1.0 - trust) + trust * value
    dist = _distances(points, np.asarray(reviewed, np.float64).reshape(-1, points.shape[1]))
    if not np.isfinite(dist).any():
        dist = np.ones(count)
    chosen: list[int] = []
    available = np.ones(count, dtype=bool)
    for _ in range(min(budget, count)):
        gain = np.where(available, weight * dist, -np.inf)
        pick = int(np.argmax(gain))
        chosen.append(pick)
        available[pick] = False
        dist = np.minimum(dist, _distances(points, points[[pick]]))
    gain = weight * dist
    rest = [int(i) for i in np.argsort(-gain, kind="stable") if available[i]]
    return chosen + rest


def order_to_priorities(order: Sequence[int]) -> np.ndarray:
    """Review order -> priorities (first = highest, 1.0 down towards 0)."""
    priorities = np.zeros(len(order))
    for rank, index in enumerate(order):
        priorities[index] = 1.0 - rank / max(1, len(order))
    return priorities


@dataclass(frozen=True)
class Candidates:
    """What the strategies know about the unreviewed images (row i = image i)."""

    scores: np.ndarray
    threshold: float
    embeddings: np.ndarray
    reviewed_embeddings: np.ndarray
    disagreement: np.ndarray | None = None
    """Per-image disagreement in [0, 1] (map and/or verdict), when a second opinion exists."""
    trust: float = 0.0
    """The scores' reliability on reviewed images (see :func:`reliability`)."""


def review_order(strategy: str, candidates: Candidates, *, budget: int, seed: int = 0) -> list[int]:
    """Every candidate index, in the order the named strategy would have them reviewed."""
    count = len(candidates.scores)
    if strategy == "random":
        return [int(i) for i in np.random.default_rng(seed).permutation(count)]
    if strategy == "uncertainty":
        return [
            int(i)
            for i in np.argsort(
                -uncertainty(candidates.scores, candidates.threshold), kind="stable"
            )
        ]
    if strategy == "novelty":
        values = novelty(candidates.embeddings, candidates.reviewed_embeddings)
        return [int(i) for i in np.argsort(-values, kind="stable")]
    if strategy == "diversity":
        return k_center_greedy(
            candidates.embeddings, count, reviewed=candidates.reviewed_embeddings, seed=seed
        )
    if strategy == "mixed":
        value = informativeness(
            uncertainty_values=uncertainty(candidates.scores, candidates.threshold),
            disagreement_values=candidates.disagreement,
        )
        return mixed_order(
            value,
            candidates.embeddings,
            reviewed=candidates.reviewed_embeddings,
            trust=candidates.trust,
            budget=budget,
        )
    raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
