"""The explain benchmark's location check and template timing run on generated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workstation.bench.explain import bench_template, check_locations, synthetic_maps
from workstation.core.errors import UserError
from workstation.core.imageio import write_png


def test_location_check_on_generated_masks(tmp_path: Path) -> None:
    folder = tmp_path / "cat" / "ground_truth" / "pit"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(6):
        mask = np.zeros((46, 113), np.uint8)
        y, x = rng.integers(0, 40), rng.integers(0, 100)
        mask[y : y + 6, x : x + 13] = 255
        mask[rng.integers(0, 46), rng.integers(0, 113)] = 255  # a stray pixel elsewhere
        write_png(folder / f"{index:03d}_mask.png", mask)
    write_png(folder / "empty_mask.png", np.zeros((46, 113), np.uint8))
    report = check_locations(tmp_path / "cat")
    assert report["checked"] == 6 and report["empty_masks"] == 1
    assert report["agreement"] == 1.0 and report["disagreements"] == []


def test_location_check_without_masks_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no mask images"):
        check_locations(tmp_path)


def test_template_bench_reports_rate() -> None:
    report = bench_template(4, 64)
    assert report["maps"] == 4 and report["explanations_per_s"] > 0
    assert all(m.map.shape == (64, 64) and m.score > 1.0 for m in synthetic_maps(3, 64))
