"""Scoring a large image in tiles: the tiles cover it with overlap, the stitched map keeps a
defect where it is (boxes in full-resolution pixels), stays within its bound, and a run
reports every tile and stops when cancelled.

A 480 px "scan" with a pyramid cut at 128 px stands in for a 20000 px one; the product's
shots are 192 px crops seen by its experts at 96 px, so tiles come from level 1.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from synthetic_parts import textured

from workstation.core import raster
from workstation.core.errors import CancelledError
from workstation.core.imageio import write_png
from workstation.experts.fewshot import FewShotConfig
from workstation.experts.pipeline import InspectionPipeline, PipelineConfig
from workstation.experts.tiled import TiledScore, choose_level, plan_tiles, score_tiled, starts

SIDE = 480
SHOT = (192, 192)
DEFECT = (300, 140)
"""(x, y) of the planted defect's centre in full-resolution pixels."""


@pytest.fixture(scope="module")
def pipeline() -> InspectionPipeline:
    """Fitted on shots cut at random places of normal scans (so every stripe phase is
    normal, as crops of a real scan would be)."""
    rng = np.random.default_rng(0)
    scans = [textured(100 + i, SIDE) for i in range(3)]
    shots = [
        scan[y : y + SHOT[0], x : x + SHOT[1]]
        for scan in scans
        for y, x in rng.integers(0, SIDE - SHOT[0], (3, 2))
    ]
    fitted = InspectionPipeline(
        PipelineConfig(fewshot=FewShotConfig(image_size=96), target_fpr=0.2)
    )
    fitted.fit(shots)
    return fitted


def scan_raster(folder: Path, *, defect: bool) -> raster.Raster:
    image = textured(1, SIDE)
    if defect:
        cv2.circle(image, DEFECT, 5, (90, 80, 90), -1)
    write_png(folder / "scan.png", image)
    raster.build(folder / "scan.png", folder / "pyramid", top_side=128)
    found = raster.open_raster(folder / "pyramid")
    assert found is not None and len(found.levels) == 3
    return found


@pytest.fixture(scope="module")
def scored(
    tmp_path_factory: pytest.TempPathFactory, pipeline: InspectionPipeline
) -> tuple[TiledScore, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []
    found = scan_raster(tmp_path_factory.mktemp("defect"), defect=True)
    result = score_tiled(
        found, pipeline, shot=SHOT, threshold=1.0, progress=lambda d, t: calls.append((d, t))
    )
    return result, calls


def test_tile_starts_cover_the_side_with_a_quarter_overlap() -> None:
    assert starts(96, 96) == [0]
    assert starts(50, 96) == [0]  # a side shorter than a tile: one tile, cut by the caller
    found = starts(240, 96)
    assert found[0] == 0 and found[-1] == 240 - 96  # the last tile ends at the border
    assert all(b - a <= 72 for a, b in itertools.pairwise(found))  # >= 25% shared


def test_the_level_is_the_coarsest_still_as_sharp_as_the_shots() -> None:
    shapes = [(480, 480), (240, 240), (120, 120)]
    assert choose_level(shapes, 1.0) == 0
    assert choose_level(shapes, 2.0) == 1
    assert choose_level(shapes, 3.9) == 1
    assert choose_level(shapes, 50.0) == 2
    plan = plan_tiles(shapes, SHOT, (96, 96))
    assert (plan.level, plan.tile) == (1, (96, 96))
    covered = np.zeros(plan.level_shape, np.uint8)
    for y, x in plan.origins:
        covered[y : y + 96, x : x + 96] += 1
    assert covered.min() >= 1  # every pixel of the level is in some tile
    assert (covered >= 2).mean() > 0.25  # and seams are seen twice
    # the kept parts (inner edges dropped, a neighbour sees them in context) still cover it
    kept = np.zeros(plan.level_shape, np.uint8)
    for origin in plan.origins:
        top, left, bottom, right = plan.kept(origin)
        assert (bottom - top) * (right - left) < 96 * 96  # every tile has an inner edge
        kept[origin[0] + top : origin[0] + bottom, origin[1] + left : origin[1] + right] = 1
    assert kept.min() == 1
    assert plan.kept((0, 0)) == (0, 0, 96 - plan.margin[0], 96 - plan.margin[1])
    assert plan.margin == (12, 12)


def test_a_planted_defect_is_boxed_at_its_full_resolution_place(
    scored: tuple[TiledScore, list[tuple[int, int]]],
) -> None:
    result, _ = scored
    assert result.full_size == (SIDE, SIDE)
    assert result.plan.level == 1 and result.tiles == 9
    assert result.fused.score > 1.0
    top = max(result.regions, key=lambda r: r.peak or 0.0)
    x0, y0, x1, y1 = top.bbox
    assert x0 <= DEFECT[0] < x1 and y0 <= DEFECT[1] < y1
    cx, cy = top.centroid
    assert abs(cx - DEFECT[0]) < 24 and abs(cy - DEFECT[1]) < 24  # a map cell or two off
    assert result.expert_scores["fewshot"] > 0 and result.embedding is not None


def test_a_clean_scan_scores_below_the_defect_one(
    tmp_path: Path,
    pipeline: InspectionPipeline,
    scored: tuple[TiledScore, list[tuple[int, int]]],
) -> None:
    clean = score_tiled(scan_raster(tmp_path, defect=False), pipeline, shot=SHOT, threshold=1.0)
    assert clean.fused.score < 1.0 < scored[0].fused.score
    assert clean.regions == ()


def test_progress_hears_every_tile_and_reaches_the_total(
    scored: tuple[TiledScore, list[tuple[int, int]]],
) -> None:
    result, calls = scored
    assert calls[0] == (0, result.tiles)
    assert [done for done, _ in calls] == list(range(result.tiles + 1))
    assert calls[-1] == (result.tiles, result.tiles)


def test_the_stitched_map_never_exceeds_its_bound_and_keeps_the_defect(
    tmp_path: Path, pipeline: InspectionPipeline
) -> None:
    found = scan_raster(tmp_path, defect=True)
    unbounded = score_tiled(found, pipeline, shot=SHOT, threshold=1.0)
    assert unbounded.fused.map.shape == (240, 240)  # the tiles' level, under 2048
    small = score_tiled(found, pipeline, shot=SHOT, threshold=1.0, map_side=12)
    assert max(small.fused.map.shape) <= 12
    # max-pooled, not averaged: the peak survives shrinking 20-fold (averaged: a third less)
    assert float(small.fused.map.max()) == pytest.approx(float(unbounded.fused.map.max()), 0.01)
    top = max(small.regions, key=lambda r: r.peak or 0.0)
    x0, y0, x1, y1 = top.bbox
    assert x0 <= DEFECT[0] < x1 and y0 <= DEFECT[1] < y1


def test_cancelling_raises_between_tiles(tmp_path: Path, pipeline: InspectionPipeline) -> None:
    found = scan_raster(tmp_path, defect=True)
    cancel = threading.Event()
    seen: list[int] = []

    def stop_after_first(done: int, total: int) -> None:
        seen.append(done)
        if done >= 1:
            cancel.set()

    with pytest.raises(CancelledError):
        score_tiled(
            found, pipeline, shot=SHOT, threshold=1.0, batch=1,
            progress=stop_after_first, cancel=cancel,
        )
    assert seen == [0, 1]  # stopped before the second tile
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyramid", "scan.png"]
