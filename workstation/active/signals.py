"""Why review an image next: one value per candidate image, larger = sooner, in [0, 1].

Pure functions over numpy arrays; the strategies (``strategies.py``) combine them.

- ``likely_defect``: how high the fused score ranks: the inspector's first wish is to see
  the defects, and every defect found is a mask the adapter learns from.
- ``near_threshold``: the score is close to the threshold, so the verdict could go either
  way; the answer moves the boundary.
- ``rank_disagreement``: the experts (few-shot, adapter, zero-shot, self-taught: any
  set) do not agree on how anomalous an image is; at least one of them is wrong.
- ``novelty``: far, in image-embedding space, from everything already reviewed.
- ``defect_novelty``: a likely defect whose anomalous region looks unlike every defect
  reviewed so far: perhaps a defect type nobody has painted yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def as_float(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()


def percentile_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Each value's rank among ``values`` scaled to [0, 1]; ties share their mean rank.

    Ranks compare experts (and rounds) whose scores are in different units.
    """
    v = as_float(values)
    if v.size < 2:
        return np.full(v.size, 0.5)
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - counts + (counts - 1) / 2.0
    return mean_rank[inverse] / (v.size - 1)


def likely_defect(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """The fused score's rank among the candidates (1 = the most anomalous-looking)."""
    return percentile_ranks(scores)


def near_threshold(scores: Sequence[float] | np.ndarray, threshold: float) -> np.ndarray:
    """exp(-|score - threshold| / spread): 1 at the threshold, falling off with the margin.

    ``spread`` is the median absolute distance of the scores to the threshold, so the band
    adapts to each product's units without a tuning constant.
    """
    s = as_float(scores)
    if s.size == 0:
        return s
    margin = np.abs(s - threshold)
    spread = float(np.median(margin)) or 1.0
    return np.exp(-margin / spread)


def rank_disagreement(expert_scores: Mapping[str, Sequence[float] | np.ndarray]) -> np.ndarray:
    """Largest gap between the experts' percentile ranks of each image, in [0, 1].

    One expert ranking an image among the most anomalous while another ranks it among the
    cleanest is the plainest disagreement there is, whatever the experts' units.
    """
    if len(expert_scores) < 2:
        raise ValueError("disagreement needs the scores of at least two experts")
    ranks = np.stack([percentile_ranks(v) for v in expert_scores.values()])
    return ranks.max(0) - ranks.min(0)


def nearest_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point to its nearest centre (inf when no centres)."""
    points = np.asarray(points, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, points.shape[1])
    if centres.shape[0] == 0:
        return np.full(points.shape[0], np.inf)
    sq = (points**2).sum(1)[:, None] - 2 * points @ centres.T + (centres**2).sum(1)[None, :]
    return np.sqrt(np.clip(sq, 0, None)).min(1)


def standardise_together(
    points: np.ndarray, others: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Both sets z-scored per dimension on their union, so no dimension's units dominate
    distances (embedding channels come in the backbone's own scales)."""
    points = np.asarray(points, dtype=np.float64)
    others = np.asarray(others, dtype=np.float64).reshape(-1, points.shape[1])
    union = np.concatenate([points, others])
    if union.shape[0] == 0:
        return points, others
    mean, std = union.mean(0), union.std(0)
    std = np.where(std > 0, std, 1.0)
    return (points - mean) / std, (others - mean) / std


def novelty(embeddings: np.ndarray, reviewed: np.ndarray) -> np.ndarray:
    """Distance to the nearest reviewed image, scaled to [0, 1] by the largest one."""
    points = np.asarray(embeddings, dtype=np.float64)
    if points.shape[0] == 0:
        return np.zeros(0)
    dist = nearest_distances(points, reviewed)
    if not np.isfinite(dist).any():
        return np.ones(points.shape[0])
    top = float(dist.max())
    return dist / top if top > 0 else np.zeros_like(dist)


def defect_novelty(
    scores: Sequence[float] | np.ndarray,
    descriptors: np.ndarray,
    reviewed_defects: np.ndarray,
) -> np.ndarray:
    """likely_defect x novelty of the anomalous region among reviewed defects' regions.

    ``descriptors`` describe each candidate's most anomalous region (e.g. mean patch
    features there), ``reviewed_defects`` the painted regions of reviewed defects. With no
    defect reviewed yet every region is new, and the signal is just ``likely_defect``.
    """
    return likely_defect(scores) * novelty(descriptors, reviewed_defects)
