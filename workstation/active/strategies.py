"""Review orders: which unreviewed image the inspector sees next, and why.

A strategy turns :class:`Candidates` (what is known about the unreviewed images) into a
:class:`ReviewOrder`: every candidate, first to last, each with the reason it sits where
it does (shown in the review list, so the inspector can trust the order). The signals
live in ``signals.py``; ``bench active`` measures every strategy here on real data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from workstation.active.signals import (
    defect_novelty,
    likely_defect,
    near_threshold,
    nearest_distances,
    rank_disagreement,
    standardise_together,
)

REASONS: dict[str, str] = {
    "likely_defect": "likely defect",
    "by_score": "next by score",
    "near_threshold": "near threshold",
    "disagreement": "experts disagree",
    "novel": "unlike reviewed",
    "new_defect_type": "new defect type?",
    "random": "random order",
}
"""Reason code -> the words the review list shows (short: the list is narrow on a laptop)."""


@dataclass(frozen=True)
class Candidates:
    """What the strategies know about the unreviewed images (row i = image i)."""

    scores: np.ndarray
    """Fused, calibrated scores."""
    threshold: float
    embeddings: np.ndarray | None = None
    """One vector per image (appearance), for coverage; only the orders in
    :data:`NEEDS_EMBEDDINGS` read them."""
    reviewed_embeddings: np.ndarray | None = None
    expert_scores: Mapping[str, np.ndarray] = field(default_factory=dict)
    """Each expert's own score per image (any units); two or more allow disagreement."""
    defect_descriptors: np.ndarray | None = None
    """Per image, a vector describing its most anomalous region."""
    reviewed_defect_descriptors: np.ndarray | None = None
    """The same for the painted regions of reviewed defects."""

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class ReviewOrder:
    order: list[int]
    """Every candidate index, first to review first."""
    reasons: list[str]
    """Per candidate index (not per position), a key of :data:`REASONS`."""


def _by_value(values: np.ndarray, reason: str) -> ReviewOrder:
    order = [int(i) for i in np.argsort(-values, kind="stable")]
    return ReviewOrder(order, [reason] * values.size)


def _score_reasons(c: Candidates) -> list[str]:
    """"likely defect" above the threshold; below it the order is only by score."""
    return ["likely_defect" if s >= c.threshold else "by_score" for s in c.scores]


def k_center_greedy(
    embeddings: np.ndarray, budget: int, *, reviewed: np.ndarray | None = None, seed: int = 0
) -> list[int]:
    """Indices of ``budget`` images, each the farthest from all reviewed and chosen so far."""
    points = np.asarray(embeddings, dtype=np.float64)
    count = points.shape[0]
    budget = min(budget, count)
    centres = np.zeros((0, points.shape[1])) if reviewed is None else reviewed
    dist = nearest_distances(points, centres)
    chosen: list[int] = []
    if budget > 0 and not np.isfinite(dist).any():
        first = int(np.random.default_rng(seed).integers(count))
        chosen.append(first)
        dist = nearest_distances(points, points[[first]])
    while len(chosen) < budget:
        dist[chosen] = -np.inf
        pick = int(np.argmax(dist))
        chosen.append(pick)
        dist = np.minimum(dist, nearest_distances(points, points[[pick]]))
    return chosen


def _random(c: Candidates, budget: int, seed: int) -> ReviewOrder:
    order = [int(i) for i in np.random.default_rng(seed).permutation(len(c))]
    return ReviewOrder(order, ["random"] * len(c))


def _likely_defect(c: Candidates, budget: int, seed: int) -> ReviewOrder:
    order = [int(i) for i in np.argsort(-likely_defect(c.scores), kind="stable")]
    return ReviewOrder(order, _score_reasons(c))


def _near_threshold(c: Candidates, budget: int, seed: int) -> ReviewOrder:
    return _by_value(near_threshold(c.scores, c.threshold), "near_threshold")


def _disagreement(c: Candidates, budget: int, seed: int) -> ReviewOrder:
    if len(c.expert_scores) < 2:  # one opinion only: nothing to disagree about yet
        return _near_threshold(c, budget, seed)
    return _by_value(rank_disagreement(c.expert_scores), "disagreement")


def _standardised_embeddings(c: Candidates) -> tuple[np.ndarray, np.ndarray]:
    if c.embeddings is None or c.reviewed_embeddings is None:
        raise ValueError("this review order needs the images' embeddings")
    return standardise_together(c.embeddings, c.reviewed_embeddings)


def _diversity(c: Candidates, budget: int, seed: int) -> ReviewOrder:
    points, reviewed = _standardised_embeddings(c)
    order = k_center_greedy(points, len(c), reviewed=reviewed, seed=seed)
    return ReviewOrder(order, ["novel"] * len(c))


def _defect_novelty(c: Candidates, budget: int, seed: int) -> ReviewOrder:
    if c.defect_descriptors is None or c.reviewed_defect_descriptors is None:
        return _likely_defect(c, budget, seed)
    values = defect_novelty(c.scores, c.defect_descriptors, c.reviewed_defect_descriptors)
    return _by_value(values, "new_defect_type")


EXPLORE_EVERY = 5
"""In the mixed order, every fifth review goes to exploration (see :func:`_mixed`)."""


def exploration_slots(budget: int) -> int:
    """Reviews of a batch of ``budget`` spent on exploration: one in :data:`EXPLORE_EVERY`.

    Budget-aware: a batch too small to hold one such slot is spent on likely defects
    alone, since a single review should find a defect; a larger one keeps the share.
    """
    return budget // EXPLORE_EVERY


def _mixed(c: Candidates, budget: int, seed: int) -> ReviewOrder:
    """Likely defects first, and every fifth review an image unlike anything reviewed.

    The idea: the likely-defect order never shows the rest of the variation (normals and
    defects the experts score low); an exploration slot chosen by coverage (k-centre on
    the image embeddings, away from everything reviewed and picked) brings those in.
    Measured (``bench active``, docs/benchmarks.md) it found fewer defects than the
    likely-defect order on 4 of 5 seeds of both bsdata and the demo and taught the
    experts no better, so it is not the default.
    """
    exploit = likely_defect(c.scores)
    reasons = _score_reasons(c)
    ranked = [int(i) for i in np.argsort(-exploit, kind="stable")]
    budget = min(budget, len(c))
    explore = exploration_slots(budget)
    exploit_picks = ranked[: budget - explore]
    taken = set(exploit_picks)
    rest = [i for i in range(len(c)) if i not in taken]
    points, reviewed = _standardised_embeddings(c)
    centres = np.concatenate([reviewed, points[exploit_picks]])
    chosen = k_center_greedy(points[rest], explore, reviewed=centres, seed=seed)
    explore_picks = [rest[i] for i in chosen]
    for i in explore_picks:
        reasons[i] = "novel"
    batch: list[int] = []
    exploits, explores = iter(exploit_picks), iter(explore_picks)
    for position in range(1, budget + 1):
        source = explores if position % EXPLORE_EVERY == 0 else exploits
        batch.append(next(source))
    taken = set(batch)
    return ReviewOrder(batch + [i for i in ranked if i not in taken], reasons)


Strategy = Callable[[Candidates, int, int], ReviewOrder]
_STRATEGIES: dict[str, Strategy] = {
    "likely-defect": _likely_defect,
    "mixed": _mixed,
    "near-threshold": _near_threshold,
    "disagreement": _disagreement,
    "diversity": _diversity,
    "defect-novelty": _defect_novelty,
    "random": _random,
}
STRATEGIES: tuple[str, ...] = tuple(_STRATEGIES)
DEFAULT_STRATEGY = "likely-defect"
"""The order with the largest gain over random in the area under the recall curve on the
worse of bsdata and the demo, and ahead of random on every seed of both
(docs/benchmarks.md, "Review order"): the experts' own ranking, learning as it goes."""
NEEDS_EMBEDDINGS: frozenset[str] = frozenset({"mixed", "diversity"})
"""Orders that read :attr:`Candidates.embeddings` (coverage); the queue loads them only
for these."""


def review_order(
    strategy: str, candidates: Candidates, *, budget: int, seed: int = 0
) -> ReviewOrder:
    """Every candidate, in the order the named strategy would have them reviewed."""
    try:
        chosen = _STRATEGIES[strategy]
    except KeyError:
        raise ValueError(
            f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}"
        ) from None
    return chosen(candidates, budget, seed)


def order_to_priorities(order: Sequence[int]) -> np.ndarray:
    """Review order -> priorities (first = highest, 1.0 down towards 0)."""
    priorities = np.zeros(len(order))
    for rank, index in enumerate(order):
        priorities[index] = 1.0 - rank / max(1, len(order))
    return priorities
