"""Review orders: permutations of the candidates, each with a reason the list can show."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.active.strategies import (
    REASONS,
    STRATEGIES,
    Candidates,
    k_center_greedy,
    order_to_priorities,
    review_order,
)


def candidates(count: int = 12, *, experts: int = 2, seed: int = 1) -> Candidates:
    rng = np.random.default_rng(seed)
    scores = rng.random(count) * 2
    names = ("fewshot", "adapter", "selftaught")[:experts]
    return Candidates(
        scores=scores,
        threshold=1.0,
        embeddings=rng.normal(size=(count, 4)),
        reviewed_embeddings=rng.normal(size=(3, 4)),
        expert_scores={n: rng.random(count) for n in names},
        defect_descriptors=rng.normal(size=(count, 3)),
        reviewed_defect_descriptors=rng.normal(size=(2, 3)),
    )


@pytest.mark.parametrize("experts", [1, 2, 3])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_orders_every_candidate_with_a_reason(strategy: str, experts: int) -> None:
    ordered = review_order(strategy, candidates(experts=experts), budget=4)
    assert sorted(ordered.order) == list(range(12))
    assert len(ordered.reasons) == 12 and set(ordered.reasons) <= set(REASONS)


def test_likely_defect_reviews_the_highest_scores_first() -> None:
    c = candidates()
    ordered = review_order("likely-defect", c, budget=3)
    assert ordered.order == [int(i) for i in np.argsort(-c.scores)]
    above = c.scores >= c.threshold
    assert above.any() and not above.all()
    assert [r == "likely_defect" for r in ordered.reasons] == above.tolist()
    assert {r for r, a in zip(ordered.reasons, above, strict=True) if not a} == {"by_score"}


def test_near_threshold_reviews_the_closest_to_the_threshold_first() -> None:
    c = candidates()
    ordered = review_order("near-threshold", c, budget=3)
    assert ordered.order[0] == int(np.argmin(np.abs(c.scores - c.threshold)))
    assert set(ordered.reasons) == {"near_threshold"}


def test_disagreement_needs_a_second_opinion() -> None:
    alone = review_order("disagreement", candidates(experts=1), budget=3)
    assert set(alone.reasons) == {"near_threshold"}  # nothing to disagree about yet
    c = candidates(experts=3)
    ordered = review_order("disagreement", c, budget=3)
    assert set(ordered.reasons) == {"disagreement"}
    ranks = {n: np.argsort(np.argsort(v)) for n, v in c.expert_scores.items()}
    spread = np.max(list(ranks.values()), 0) - np.min(list(ranks.values()), 0)
    assert spread[ordered.order[0]] == spread.max()


def test_mixed_spends_every_fifth_review_on_an_image_unlike_anything_reviewed() -> None:
    # two clusters; everything reviewed so far, and every high score, sits in the first
    points = np.array([[0.0, 0.0]] * 8 + [[10.0, 0.0]] * 2) + np.arange(10)[:, None] * 0.01
    scores = np.array([3.0, 2.9, 2.8, 2.7, 2.6, 2.5, 0.5, 0.4, 0.3, 0.2])
    c = Candidates(scores, 1.0, points, np.array([[0.0, 0.0]]))
    ordered = review_order("mixed", c, budget=5)
    assert ordered.order[:4] == [0, 1, 2, 3]  # likely defects
    assert ordered.order[4] in (8, 9) and ordered.reasons[ordered.order[4]] == "novel"
    assert ordered.order[5:] == [i for i in range(10) if i not in ordered.order[:5]]
    # a batch smaller than five is spent on likely defects alone
    assert review_order("mixed", c, budget=4).order == list(range(10))
    # the app's batch of 16 on 30 images: exploration at positions 5, 10 and 15
    rng = np.random.default_rng(0)
    many = Candidates(rng.random(30), 0.5, rng.normal(size=(30, 3)), np.zeros((0, 3)))
    reasons = review_order("mixed", many, budget=16)
    head = [reasons.reasons[i] for i in reasons.order[:16]]
    assert [p for p, r in enumerate(head, start=1) if r == "novel"] == [5, 10, 15]


def test_k_center_spreads_and_avoids_reviewed_regions() -> None:
    points = np.array([[0.0, 0], [0.1, 0], [10, 0], [10.1, 0], [0, 10]])
    assert k_center_greedy(points, 2, reviewed=np.array([[0.0, 0.05]])) == [3, 4]
    first = k_center_greedy(points, 3)
    assert len(set(first)) == 3 and len({0, 1} & set(first)) <= 1


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        review_order("clever", candidates(), budget=1)


def test_priorities_follow_the_order() -> None:
    priorities = order_to_priorities([2, 0, 1])
    assert priorities[2] > priorities[0] > priorities[1]
