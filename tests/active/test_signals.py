"""Review signals: each does what its name says, in [0, 1], whatever the experts' units."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.active.signals import (
    defect_novelty,
    likely_defect,
    near_threshold,
    novelty,
    percentile_ranks,
    rank_disagreement,
)


def test_percentile_ranks_share_ties_and_ignore_units() -> None:
    assert percentile_ranks([3.0, 1.0, 2.0]).tolist() == [1.0, 0.0, 0.5]
    assert percentile_ranks([1.0, 1.0, 5.0]).tolist() == [0.25, 0.25, 1.0]
    assert percentile_ranks([7.0]).tolist() == [0.5]
    scores = np.array([0.1, 4.0, 2.0])
    assert np.array_equal(percentile_ranks(scores), percentile_ranks(np.exp(scores) * 100))


def test_likely_defect_follows_the_score() -> None:
    assert likely_defect([0.2, 3.0, 1.0]).argmax() == 1


def test_near_threshold_peaks_at_the_threshold() -> None:
    values = near_threshold([0.2, 0.95, 1.0, 1.3, 3.0], threshold=1.0)
    assert values.argmax() == 2 and values[2] == 1.0
    assert values[1] > values[3] > values[4] > 0
    assert near_threshold([], threshold=1.0).size == 0


def test_rank_disagreement_over_any_number_of_experts() -> None:
    agree = {"fewshot": [1.0, 2.0, 3.0], "adapter": [0.01, 0.02, 0.9]}
    assert rank_disagreement(agree).tolist() == [0.0, 0.0, 0.0]
    # the self-taught expert ranks image 0 top where the others rank it bottom
    three = {**agree, "selftaught": [9.0, 1.0, 2.0]}
    values = rank_disagreement(three)
    assert values[0] == 1.0 and values.argmax() == 0
    with pytest.raises(ValueError, match="at least two"):
        rank_disagreement({"fewshot": [1.0]})


def test_novelty_is_distance_to_reviewed() -> None:
    values = novelty(np.array([[0.0], [1.0], [4.0]]), np.array([[0.0]]))
    assert values.tolist() == [0.0, 0.25, 1.0]
    assert novelty(np.array([[1.0], [2.0]]), np.zeros((0, 1))).tolist() == [1.0, 1.0]


def test_defect_novelty_prefers_likely_defects_unlike_reviewed_ones() -> None:
    scores = np.array([5.0, 4.0, 0.1])
    regions = np.array([[0.0, 0.0], [9.0, 0.0], [9.0, 0.0]])
    painted = np.array([[0.1, 0.0]])  # a scratch was reviewed; image 0 looks like it
    values = defect_novelty(scores, regions, painted)
    assert values.argmax() == 1 and values[2] == 0.0
    # before any defect was reviewed, it is just how likely a defect each image is
    fresh = defect_novelty(scores, regions, np.zeros((0, 2)))
    assert fresh.tolist() == likely_defect(scores).tolist()
