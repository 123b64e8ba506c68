"""One region definition for both explainers, including maps whose threshold is <= 0."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.core.types import AnomalyMap
from workstation.explain.prompts import ExplainRequest, PromptOptions, region_facts
from workstation.explain.regions import region_mask, usable_threshold
from workstation.explain.template import explain


def _scratch_map(threshold: float | None) -> AnomalyMap:
    values = (np.random.default_rng(0).random((128, 128)) * 0.5).astype(np.float32)
    values[50:53, 10:110] = 9.0
    return AnomalyMap(values, score=9.0, threshold=threshold)


@pytest.mark.parametrize("threshold", [0.0, -1.0])
def test_a_threshold_not_above_zero_is_no_boundary_and_cuts_at_half_the_peak(
    threshold: float,
) -> None:
    amap = _scratch_map(threshold)
    assert usable_threshold(amap) is None
    region = region_mask(amap)
    # Only the scratch (9.0 > 4.5), never the whole image that ">= 0" would give.
    assert region.sum() == 3 * 100
    assert np.array_equal(region, region_mask(_scratch_map(None)))


@pytest.mark.parametrize("threshold", [0.0, -1.0])
def test_template_describes_the_scratch_not_the_whole_image(threshold: float) -> None:
    result = explain(_scratch_map(threshold))
    assert result.verdict == "anomalous" and result.defect_type == "scratch"
    assert "threshold" not in result.description


def test_a_mask_overrides_the_map_and_is_resized_to_it() -> None:
    amap = _scratch_map(1.0)
    mask = np.zeros((64, 64), np.uint8)
    mask[:8, :8] = 255
    region = region_mask(amap, mask)
    assert region.shape == (128, 128) and region[:16, :16].all() and region.sum() == 256


def test_prompt_facts_call_a_zero_threshold_uncalibrated() -> None:
    image = np.zeros((128, 128, 3), np.uint8)
    request = ExplainRequest(image=image, anomaly_map=_scratch_map(0.0))
    facts = region_facts(request, [], PromptOptions())
    assert "uncalibrated, no threshold" in facts and "x the threshold" not in facts
