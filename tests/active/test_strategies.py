"""Review-order strategies: each signal does what its name says; orders are permutations."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.active.strategies import (
    STRATEGIES,
    Candidates,
    informativeness,
    k_center_greedy,
    map_disagreement,
    mixed_order,
    novelty,
    order_to_priorities,
    reliability,
    review_order,
    uncertainty,
    verdict_disagreement,
)


def test_uncertainty_peaks_at_the_threshold() -> None:
    values = uncertainty([0.2, 0.95, 1.0, 1.3, 3.0], threshold=1.0)
    assert values.argmax() == 2 and values[2] == 1.0
    assert values[1] > values[3] > values[4] > 0
    assert uncertainty([], threshold=1.0).size == 0


def test_map_disagreement_is_zero_for_agreement_and_one_for_opposites() -> None:
    rng = np.random.default_rng(0)
    heat = rng.random((40, 60))
    values = map_disagreement([heat, heat, heat], [heat * 3 + 1, -heat, rng.random((40, 60))])
    assert values[0] == pytest.approx(0.0, abs=1e-9)
    assert values[1] == pytest.approx(1.0, abs=1e-9)
    assert 0.3 < values[2] < 0.7
    with pytest.raises(ValueError, match="shapes differ"):
        map_disagreement([heat], [heat[:10]])


def test_verdict_disagreement_ignores_missing_verdicts() -> None:
    assert verdict_disagreement([True, False, None, True], [False, False, True, None]).tolist() == [
        1.0,
        0.0,
        0.0,
        0.0,
    ]


def test_k_center_spreads_and_avoids_reviewed_regions() -> None:
    points = np.array([[0.0, 0], [0.1, 0], [10, 0], [10.1, 0], [0, 10]])
    assert k_center_greedy(points, 2, reviewed=np.array([[0.0, 0.05]])) == [3, 4]
    first = k_center_greedy(points, 3)
    assert len(set(first)) == 3 and len({0, 1} & set(first)) <= 1


def test_novelty_is_distance_to_reviewed() -> None:
    values = novelty(np.array([[0.0], [1.0], [4.0]]), np.array([[0.0]]))
    assert values.tolist() == [0.0, 0.25, 1.0]
    assert novelty(np.array([[1.0], [2.0]]), np.zeros((0, 1))).tolist() == [1.0, 1.0]


def test_reliability_from_reviewed_scores() -> None:
    assert reliability([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert reliability([0.1, 0.9], [True, False]) == 0.0
    assert reliability([0.5, 0.6], [False, False]) == 0.0


def test_mixed_covers_when_untrusted_and_prefers_uncertain_when_trusted() -> None:
    # Two clusters; the uncertain images all sit in cluster A.
    points = np.array([[0, 0], [0.2, 0], [0.4, 0], [10, 0], [10.2, 0], [10.4, 0]], float)
    value = np.array([1.0, 0.95, 0.9, 0.0, 0.0, 0.0])
    reviewed = np.array([[5.0, 0.0]])
    cold = mixed_order(value, points, reviewed=reviewed, trust=0.0, budget=2)
    assert {cold[0] // 3, cold[1] // 3} == {0, 1}  # one from each cluster
    warm = mixed_order(value, points, reviewed=reviewed, trust=1.0, budget=2)
    assert warm[0] // 3 == 0 and warm[1] // 3 == 0
    assert sorted(warm) == list(range(6))


def test_informativeness_uses_only_signals_given() -> None:
    u = np.array([1.0, 0.0])
    assert informativeness(uncertainty_values=u).tolist() == [1.0, 0.0]
    both = informativeness(uncertainty_values=u, disagreement_values=np.array([0.0, 1.0]))
    assert both[0] > both[1] > 0
    with pytest.raises(ValueError, match="at least one"):
        informativeness()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_orders_every_candidate(strategy: str) -> None:
    rng = np.random.default_rng(1)
    candidates = Candidates(
        scores=rng.random(12),
        threshold=0.5,
        embeddings=rng.normal(size=(12, 4)),
        reviewed_embeddings=rng.normal(size=(3, 4)),
        trust=0.5,
    )
    order = review_order(strategy, candidates, budget=4)
    assert sorted(order) == list(range(12))


def test_unknown_strategy_is_refused() -> None:
    candidates = Candidates(np.zeros(1), 0.5, np.zeros((1, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="unknown strategy"):
        review_order("clever", candidates, budget=1)


def test_priorities_follow_the_order() -> None:
    priorities = order_to_priorities([2, 0, 1])
    assert priorities[2] > priorities[0] > priorities[1]
