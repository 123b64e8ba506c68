"""Pool expert: the unlabelled pool lowers what recurs in it, never what is rare, and never
compares an image with itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_parts import textured, with_defect

from workstation.core.errors import UserError
from workstation.experts.base import build_backbone
from workstation.experts.fewshot import FewShotConfig, FewShotExpert
from workstation.experts.pipeline import InspectionPipeline, PipelineConfig
from workstation.experts.pool import (
    PoolConfig,
    PoolExpert,
    image_key,
    interval_mean,
    per_image_nearest,
)

SIZE = 96


def _pool_expert(**pool: object) -> PoolExpert:
    config = FewShotConfig(image_size=SIZE)
    return PoolExpert(build_backbone("filterbank"), config, PoolConfig(**pool))  # type: ignore[arg-type]


def _with_film(seed: int) -> np.ndarray:
    """A normal part under a faint bright film over its left third: a variation the shots
    do not show but most of the pool does (grease, lighting)."""
    image = textured(seed).astype(np.int16)
    image[:, :32] += 60
    return np.clip(image, 0, 255).astype(np.uint8)


def test_nearest_and_interval_mean_match_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(50, 7, generator=gen)
    refs = [torch.randn(n, 7, generator=gen) for n in (3, 11, 20)]
    got = per_image_nearest(queries, refs, chunk=16)
    want = torch.stack([torch.cdist(queries, r).amin(1) for r in refs], 1)
    assert torch.allclose(got, want, atol=1e-4)
    rows = torch.tensor([[3.0, 1.0, 2.0, 10.0]])
    assert interval_mean(rows, 0.5).tolist() == [1.5]  # the two smallest
    assert interval_mean(rows, 0.01).tolist() == [1.0]  # at least one value


def test_a_variation_shared_by_the_pool_is_lowered_a_rare_defect_is_not() -> None:
    shots = [textured(seed) for seed in range(5)]
    pool = [_with_film(seed) for seed in range(100, 112)]
    defect, _ = with_defect(77)
    filmed = _with_film(200)
    plain = FewShotExpert(build_backbone("filterbank"), FewShotConfig(image_size=SIZE))
    plain.fit(shots)
    model = _pool_expert(references=12)
    model.fit(shots)
    assert model.pool_size == 0
    before = model.patch_grids([filmed, defect])
    assert np.allclose(before[0], plain.patch_grids([filmed])[0])  # no pool: plain few-shot
    assert model.set_pool([*pool, defect]) == 12  # the defect image is in the pool too
    after = model.patch_grids([filmed, defect])
    film, rest = (slice(None), slice(0, 3)), (slice(None), slice(5, None))
    assert after[0][film].mean() < 0.6 * before[0][film].mean()
    assert after[0][rest].mean() <= before[0][rest].mean() + 1e-6  # min: never higher
    # the defect is in no other pool image, and the image is not compared with itself
    assert after[1].max() >= 0.9 * before[1].max()


def test_the_pool_needs_a_fit_and_two_images() -> None:
    model = _pool_expert()
    with pytest.raises(UserError, match="fit the pool expert"):
        model.set_pool([textured(1), textured(2)])
    model.fit([textured(s) for s in range(3)])
    assert model.set_pool([textured(9)]) == 0
    assert image_key(textured(9)) == image_key(textured(9).copy())
    assert image_key(textured(9)) != image_key(textured(8))
    with pytest.raises(UserError, match="lowest_fraction"):
        PoolConfig(lowest_fraction=0)


def test_pipeline_saves_and_reloads_the_bank_and_the_pool(tmp_path: Path) -> None:
    config = PipelineConfig(experts=("pool",), fewshot=FewShotConfig(image_size=SIZE))
    pipeline = InspectionPipeline(config)
    pipeline.fit([textured(s) for s in range(4)])
    pool = pipeline.bank_expert()
    assert isinstance(pool, PoolExpert)
    pool.set_pool([_with_film(s) for s in range(10, 13)])
    defect, _ = with_defect(5)
    score = pipeline.predict([defect])[0].score
    loaded = InspectionPipeline.load(pipeline.save(tmp_path / "p"))
    reloaded = loaded.bank_expert()
    assert isinstance(reloaded, PoolExpert) and reloaded.pool_size == 3
    assert loaded.predict([defect])[0].score == pytest.approx(score, rel=1e-5)
    with pytest.raises(UserError, match="enable one"):
        PipelineConfig(experts=("fewshot", "pool"))
