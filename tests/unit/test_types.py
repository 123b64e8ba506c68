"""The product's decision threshold: the one fallback the queue and the explainer share."""

from __future__ import annotations

import pytest

from workstation.core.types import CALIBRATED_THRESHOLD, Product


def test_a_product_without_a_stored_threshold_is_judged_at_the_calibrated_level() -> None:
    assert Product(id=1, name="p").decision_threshold == CALIBRATED_THRESHOLD == 1.0


@pytest.mark.parametrize("stored", [0.0, 0.4, 2.5])
def test_a_stored_threshold_wins_even_when_it_is_zero(stored: float) -> None:
    assert Product(id=1, name="p", threshold=stored).decision_threshold == stored
