"""Template explainer on synthetic maps with known regions: location, size, shape words."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workstation.core import masks
from workstation.core.types import AnomalyMap, Product
from workstation.explain.template import explain


def background(size: int = 128, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((size, size)) * 0.5).astype(np.float32)


def amap(values: np.ndarray, *, threshold: float | None = 1.0) -> AnomalyMap:
    return AnomalyMap(values, score=float(values.max()), threshold=threshold)


def test_normal_map() -> None:
    result = explain(amap(background()))
    assert result.verdict == "normal" and result.defect_type == "" and result.location == ""
    assert (
        result.description.startswith("No region") and "0.50x the threshold" in result.description
    )


def test_scratch_upper_right() -> None:
    values = background()
    values[10:13, 70:125] = 1.6
    result = explain(amap(values))
    assert result.verdict == "anomalous"
    assert result.defect_type == "scratch"
    assert result.location == "upper right"
    assert "1 anomalous region" in result.description
    assert "elongated" in result.description and "1.6x the threshold" in result.description
    assert "1.0%" in result.description  # 3 * 55 / 128**2 = 1.0 %


def test_pit_lower_left_low_severity() -> None:
    values = background()
    values[100:104, 10:14] = 1.1
    result = explain(amap(values))
    assert (result.defect_type, result.location, result.severity) == ("pit", "lower left", "low")
    assert "compact" in result.description


def test_strong_pit_is_high_severity() -> None:
    values = background()
    values[60:64, 60:64] = 3.0
    result = explain(amap(values))
    assert (result.location, result.severity) == ("center", "high")
    assert "in the center" in result.description


def test_large_weak_region_is_stain() -> None:
    values = background()
    yy, xx = np.mgrid[:128, :128]
    values[(yy - 90) ** 2 + (xx - 64) ** 2 < 30**2] = 1.1
    result = explain(amap(values))
    assert result.defect_type == "stain" and result.location == "lower center"


def test_large_strong_solid_region_is_missing_material() -> None:
    values = background()
    values[0:50, 0:50] = 4.0
    result = explain(amap(values))
    assert result.defect_type == "missing material" and result.severity == "high"


def test_product_vocabulary_word_is_used() -> None:
    values = background()
    values[60:62, 5:120] = 2.0
    product = Product(id=1, name="screw", defect_vocabulary=("pitting", "Crack"))
    assert explain(amap(values), product=product).defect_type == "Crack"
    values = background()
    values[60:63, 60:63] = 2.0
    assert explain(amap(values), product=product).defect_type == "pitting"


def test_counts_regions_and_names_largest_part() -> None:
    values = background()
    values[5:8, 5:8] = 1.5
    values[90:120, 90:120] = 1.5
    result = explain(amap(values))
    assert result.description.startswith("2 anomalous regions")
    assert result.location == "lower right"


def test_mask_overrides_map_and_location_matches_dominant_cell() -> None:
    values = background()
    mask = np.zeros((128, 128), np.uint8)
    mask[0:40, 100:128] = 1
    mask[40:50, 0:10] = 1
    result = explain(amap(values), mask=mask)
    assert result.verdict == "anomalous"
    assert masks.cell_from_words(result.location) == masks.dominant_cell(mask) == (0, 2)


def test_mask_of_other_size_is_resized() -> None:
    mask = np.zeros((256, 256), np.uint8)
    mask[200:250, 10:40] = 255
    result = explain(amap(background()), mask=mask)
    assert result.location == "lower left"


def test_uncalibrated_map_uses_relative_threshold() -> None:
    values = background()
    values[50:53, 10:110] = 9.0
    result = explain(amap(values, threshold=None))
    assert result.verdict == "anomalous" and result.defect_type == "scratch"
    assert "threshold" not in result.description


def test_above_threshold_score_without_region() -> None:
    values = background()
    result = explain(AnomalyMap(values, score=2.0, threshold=1.0))
    assert result.verdict == "anomalous" and result.location == ""
    assert "no single region" in result.description


@pytest.mark.parametrize("size", [(64, 200), (513, 257)])
def test_non_square_and_large_maps(size: tuple[int, int]) -> None:
    values = np.zeros(size, np.float32)
    h, w = size
    values[h - 5 : h, w - 5 : w] = 2.0
    assert explain(amap(values)).location == "lower right"


def test_deterministic() -> None:
    values = background(seed=3)
    values[30:40, 30:90] = 1.7
    assert explain(amap(values)) == explain(amap(values.copy()))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(8, 96),
    st.integers(8, 96),
    st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 0.6), st.floats(0, 0.6)),
        min_size=1,
        max_size=4,
    ),
)
def test_location_always_names_the_dominant_cell(
    h: int, w: int, boxes: list[tuple[float, float, float, float]]
) -> None:
    values = np.zeros((h, w), np.float32)
    for fy, fx, fh, fw in boxes:
        y, x = int(fy * (h - 1)), int(fx * (w - 1))
        values[y : y + 1 + int(fh * h), x : x + 1 + int(fw * w)] = 2.0
    result = explain(amap(values))
    assert masks.cell_from_words(result.location) == masks.dominant_cell(values >= 1.0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=64, max_size=64),
    st.one_of(st.none(), st.floats(-1, 3)),
)
def test_never_raises_on_odd_values(values: list[float], threshold: float | None) -> None:
    array = np.array(values, np.float32).reshape(8, 8)
    score = float(np.nan_to_num(np.nanmax(array) if np.isfinite(array).any() else 0.0))
    result = explain(AnomalyMap(array, score=score, threshold=threshold))
    assert result.verdict in ("normal", "anomalous")
