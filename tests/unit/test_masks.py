"""Mask ops and region analysis on synthetic masks with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.core import masks
from workstation.core.errors import UserError


def blank(h: int = 90, w: int = 120) -> np.ndarray:
    return np.zeros((h, w), np.uint8)


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ((0, 0), "upper left"),
        ((0, 1), "upper center"),
        ((1, 1), "center"),
        ((1, 2), "center right"),
        ((2, 1), "lower center"),
        ((2, 2), "lower right"),
    ],
)
def test_grid_words_round_trip(cell: masks.Cell, words: str) -> None:
    assert masks.grid_words(cell) == words
    assert masks.cell_from_words(words) == cell


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("Top-Left corner", (0, 0)),
        ("bottom middle", (2, 1)),
        ("middle right", (1, 2)),
        ("centre", (1, 1)),
        ("left", (1, 0)),
        ("at the top", (0, 1)),
        ("nowhere", None),
        ("", None),
    ],
)
def test_cell_from_synonyms(text: str, cell: masks.Cell | None) -> None:
    assert masks.cell_from_words(text) == cell


def test_every_cell_has_a_distinct_phrase() -> None:
    assert len(set(masks.ALL_LOCATIONS)) == 9


def test_location_is_largest_part_not_centroid() -> None:
    # A solid block in the lower right plus thin arms along the top and left edges: the
    # centroid falls in the empty centre cell, the largest part is in the lower right.
    mask = blank(90, 90)
    mask[62:90, 62:90] = 1
    mask[0:4, :] = 1
    mask[:, 0:4] = 1
    cx, cy = masks.centroid(mask)
    assert 30 <= cx < 60 and 30 <= cy < 60
    counts = masks.grid_cell_counts(mask)
    assert counts.sum() == mask.sum() and counts[1, 1] == 0
    assert masks.dominant_cell(mask) == (2, 2)
    assert masks.analyze_regions(mask)[0].cell == (2, 2)


def test_empty_mask() -> None:
    mask = blank()
    assert masks.dominant_cell(mask) is None
    assert masks.bbox(mask) is None
    assert masks.centroid(mask) is None
    assert masks.analyze_regions(mask) == []
    assert masks.area_fraction(mask) == 0.0


def test_binarize_accepts_common_encodings() -> None:
    for array in (
        np.array([[0, 255]], np.uint8),
        np.array([[False, True]]),
        np.array([[0.0, 0.9]], np.float32),
        np.array([[[0], [1]]], np.uint8),
    ):
        assert masks.binarize(array).tolist() == [[0, 1]]


def test_bad_shapes_are_user_errors() -> None:
    with pytest.raises(UserError):
        masks.binarize(np.zeros((2, 2, 2, 2)))
    with pytest.raises(UserError):
        masks.mask_from_map(np.zeros((2, 2, 2)), 0.5)
    with pytest.raises(UserError):
        masks.analyze_regions(np.ones((4, 4), np.uint8), np.zeros((5, 5), np.float32))


def test_mask_from_map_threshold_and_nan() -> None:
    values = np.array([[0.2, 0.5, np.nan, 0.9]], np.float32)
    assert masks.mask_from_map(values, 0.5).tolist() == [[0, 1, 0, 1]]


def test_bbox_area_centroid() -> None:
    mask = blank()
    mask[10:20, 30:50] = 1
    assert masks.bbox(mask) == (30, 10, 50, 20)
    assert masks.area_fraction(mask) == pytest.approx(200 / (90 * 120))
    assert masks.centroid(mask) == pytest.approx((39.5, 14.5))


def test_elongation_line_vs_disc() -> None:
    line = blank(128, 128)
    line[60:62, 10:120] = 1
    disc = blank(128, 128)
    yy, xx = np.mgrid[:128, :128]
    disc[(yy - 64) ** 2 + (xx - 64) ** 2 < 20**2] = 1
    assert masks.elongation(line) > 10
    assert masks.elongation(disc) == pytest.approx(1.0, abs=0.05)
    diagonal = np.eye(100, dtype=np.uint8)
    assert masks.elongation(diagonal) > 10
    assert masks.elongation(blank()) == 1.0


def test_analyze_regions_orders_and_measures() -> None:
    mask = blank(300, 300)
    mask[20:30, 200:290] = 1  # scratch, upper right, 900 px
    mask[250:270, 20:40] = 1  # pit, lower left, 400 px
    values = mask.astype(np.float32) * 2.0
    values[255, 25] = 5.0
    regions = masks.analyze_regions(mask, values, max_side=64)  # forces downsampling
    assert [r.cell for r in regions] == [(0, 2), (2, 0)]
    assert sum(r.area_px for r in regions) == 1300
    assert regions[0].elongation > 3 > regions[1].elongation
    assert regions[1].peak == 5.0
    assert regions[0].location == "upper right"
    x0, y0, x1, y1 = regions[1].bbox
    assert x0 <= 20 and y0 <= 250 and x1 >= 40 and y1 >= 270


def test_tiny_pit_survives_downsampling() -> None:
    mask = blank(1000, 1000)
    mask[900, 100] = 1
    regions = masks.analyze_regions(mask, max_side=100)
    assert len(regions) == 1 and regions[0].area_px == 1 and regions[0].cell == (2, 0)


def test_max_pool_keeps_peaks() -> None:
    values = np.random.default_rng(0).random((7, 9)).astype(np.float32)
    pooled = masks.max_pool(values, 2)
    assert pooled.shape == (4, 5)
    assert pooled[0, 0] == values[:2, :2].max()
    assert pooled[3, 4] == values[6, 8]


def test_polygons_and_outline() -> None:
    mask = blank()
    mask[10:20, 10:20] = 1
    mask[50:60, 70:90] = 1
    polys = masks.polygons(mask)
    assert len(polys) == 2 and all(p.shape[1] == 2 for p in polys)
    edge = masks.outline(mask)
    assert edge.sum() == 36 + 56
    assert edge[15, 15] == 0 and edge[10, 15] == 1


def test_small_regions_are_measured_at_full_resolution() -> None:
    mask = blank(1000, 1000)
    mask[500:502, 100:130] = 1  # a short scratch: 3 x 1 blocks at factor 10
    mask[100:400, 600:900] = 1  # a large patch keeps the block estimate
    regions = masks.analyze_regions(mask, max_side=100)
    scratch = next(r for r in regions if r.area_px < 1000)
    assert scratch.area_px == 60 and scratch.bbox == (100, 500, 130, 502)
    assert scratch.elongation > 8
    assert sum(r.area_px for r in regions) == pytest.approx(mask.sum(), rel=0.05)
