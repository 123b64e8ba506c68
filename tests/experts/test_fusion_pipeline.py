"""Calibration, threshold confidence, fusion and the pipeline's save / load."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from synthetic_parts import textured, with_defect

from workstation.core.errors import UserError
from workstation.core.types import AnomalyMap
from workstation.experts.fewshot import FewShotConfig
from workstation.experts.fusion import (
    PROBABILITY_UNIT_FLOOR,
    Calibration,
    binomial_cdf,
    calibrate,
    choose_threshold,
    normals_for_confidence,
    probability_scale,
    threshold_confidence,
)
from workstation.experts.pipeline import InspectionPipeline, PipelineConfig


def test_binomial_cdf_matches_direct_sum() -> None:
    n, p = 12, 0.3
    direct = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(5))
    assert binomial_cdf(4, n, p) == pytest.approx(direct)
    assert binomial_cdf(-1, n, p) == 0.0 and binomial_cdf(n, n, p) == 1.0


def test_confidence_of_the_maximum_is_one_minus_power() -> None:
    # Threshold = largest of n normals: P(FPR <= a) = 1 - (1 - a)^n.
    assert threshold_confidence(8, 8, 0.05) == pytest.approx(1 - 0.95**8)
    assert normals_for_confidence(0.05) == 45  # 1 - 0.95^45 >= 0.9 > 1 - 0.95^44


def test_confidence_matches_simulation() -> None:
    rng = np.random.default_rng(0)
    n, rank, target = 20, 18, 0.1
    uniforms = np.sort(rng.random((20000, n)), axis=1)
    true_fpr = 1 - uniforms[:, rank - 1]
    assert threshold_confidence(n, rank, target) == pytest.approx(
        (true_fpr <= target).mean(), abs=0.015
    )


def test_threshold_rank_is_conformal_or_the_maximum() -> None:
    scores = list(range(1, 101))
    choice = choose_threshold(scores, 0.05)
    assert choice.rank == math.ceil(101 * 0.95) == 96 and choice.raw == 96
    few = choose_threshold([3.0, 1.0, 2.0], 0.05)
    assert few.rank == 3 and few.raw == 3.0
    assert "45 normals" in few.statement()
    with pytest.raises(UserError):
        choose_threshold([], 0.05)


def _outputs(rng: np.random.Generator, shift: float = 0.0) -> dict[str, AnomalyMap]:
    a = rng.normal(5 + shift, 1, (16, 16)).astype(np.float32)
    b = rng.normal(0.2 + shift / 10, 0.05, (16, 16)).astype(np.float32)
    return {
        "fewshot": AnomalyMap(a, float(a.max())),
        "zeroshot": AnomalyMap(b, float(b.max())),
        "adapter": AnomalyMap(np.zeros((16, 16), np.float32), 0.0),
    }


def test_calibrated_threshold_is_one_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    normal = [_outputs(rng) for _ in range(10)]
    calibration = calibrate(normal, target_fpr=0.1, additive=("adapter",))
    fused = [calibration.fuse(out) for out in normal]
    assert max(f.score for f in fused) == pytest.approx(1.0)  # rank 10 of 10 = maximum
    assert all(f.threshold == 1.0 for f in fused)
    shifted = calibration.fuse(_outputs(rng, shift=4.0))
    assert shifted.anomalous
    calibration.save(tmp_path)
    again = Calibration.load(tmp_path)
    assert again == calibration
    with pytest.raises(UserError, match="did not run"):
        calibration.fuse({"fewshot": normal[0]["fewshot"]})


def test_constant_normals_still_calibrate() -> None:
    flat = {"fewshot": AnomalyMap(np.zeros((8, 8), np.float32), 0.0)}
    calibration = calibrate([flat, flat], target_fpr=0.05)
    assert calibration.fuse(flat).score == pytest.approx(1.0)
    bump = {"fewshot": AnomalyMap(np.ones((8, 8), np.float32), 1.0)}
    assert calibration.fuse(bump).score > 1.0


def test_damaged_calibration_file_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(UserError, match="damaged"):
        Calibration.load(tmp_path)
    with pytest.raises(UserError, match="run onboarding"):
        Calibration.load(tmp_path / "missing")


def small_config(**options: object) -> PipelineConfig:
    return PipelineConfig(fewshot=FewShotConfig(image_size=96), **options)  # type: ignore[arg-type]


def test_pipeline_flags_the_defect_and_round_trips(tmp_path: Path) -> None:
    pipeline = InspectionPipeline(small_config(target_fpr=0.2))
    calibration = pipeline.fit([textured(seed) for seed in range(6)])
    assert calibration.threshold.n == 6
    defect, _ = with_defect(9)
    results = pipeline.predict([textured(40), defect])
    assert results[1].anomalous is True
    assert results[1].score > results[0].score
    pipeline.save(tmp_path / "v1")
    loaded = InspectionPipeline.load(tmp_path / "v1")
    again = loaded.predict([textured(40), defect])
    assert [r.score for r in again] == pytest.approx([r.score for r in results])


def test_pipeline_needs_normals_and_calibration(tmp_path: Path) -> None:
    pipeline = InspectionPipeline(small_config())
    with pytest.raises(UserError, match="at least one normal"):
        pipeline.fit([])
    with pytest.raises(UserError, match="not calibrated"):
        pipeline.predict([textured(0)])
    with pytest.raises(UserError, match="run onboarding"):
        InspectionPipeline.load(tmp_path)
    with pytest.raises(UserError, match="unknown or no experts"):
        PipelineConfig(experts=("magic",))


class BlobExpert:
    """Stand-in for a learned adapter: probability 1 on dark pixels."""

    name = "adapter"

    def fit(self, normals: Sequence[np.ndarray], *, progress: object = None) -> None:
        del normals, progress

    def predict(self, images: Sequence[np.ndarray]) -> list[AnomalyMap]:
        out = []
        for image in images:
            heat = (np.asarray(image).mean(-1) < 50).astype(np.float32)
            out.append(AnomalyMap(heat, float(heat.max()), expert=self.name))
        return out


def test_adapter_joins_the_fusion_additively() -> None:
    pipeline = InspectionPipeline(small_config())
    pipeline.add_expert(BlobExpert(), additive=True)
    pipeline.fit([textured(seed) for seed in range(4)])
    assert pipeline.calibration is not None
    assert [n.additive for n in pipeline.calibration.norms] == [False, True]
    fused, parts = pipeline.predict_detailed([with_defect(3)[0]])[0]
    assert set(parts) == {"fewshot", "adapter"}
    assert fused.expert == "fewshot+adapter" and fused.anomalous


def test_fused_pipeline_with_tiny_clip_round_trips(tmp_path: Path) -> None:
    from tiny_models import save_tiny_clip

    from workstation.core.types import Product

    folder = save_tiny_clip(tmp_path / "tiny-clip")
    config = small_config(experts=("fewshot", "zeroshot"), clip_model=str(folder))
    product = Product(id=1, name="bracket", defect_vocabulary=("dent",))
    pipeline = InspectionPipeline(config, product=product)
    calibration = pipeline.fit([textured(seed) for seed in range(3)])
    assert [n.name for n in calibration.norms] == ["fewshot", "zeroshot"]
    results = pipeline.predict([textured(30), with_defect(4)[0]])
    assert all(r.map.shape == (96, 96) and np.isfinite(r.score) for r in results)
    pipeline.save(tmp_path / "saved")
    loaded = InspectionPipeline.load(tmp_path / "saved", product=product)
    again = loaded.predict([textured(30)])[0]
    assert again.score == pytest.approx(results[0].score, rel=1e-4)


def test_adapter_probability_is_scaled_to_normal_units_with_a_floor() -> None:
    rng = np.random.default_rng(2)
    normal = [_outputs(rng) for _ in range(10)]  # adapter silent (0) on every normal
    calibration = calibrate(normal, target_fpr=0.1, additive=("adapter",))
    adapter_norm = calibration.norms[-1]
    assert adapter_norm.additive and adapter_norm.spread == PROBABILITY_UNIT_FLOOR
    probe = _outputs(rng)
    quiet = calibration.fuse(probe)
    heat = np.zeros((16, 16), np.float32)
    heat[3, 4] = 0.5
    probe["adapter"] = AnomalyMap(heat, 0.5)
    loud = calibration.fuse(probe)
    # 0.5 probability = 0.5 / floor normal units on top of the base, in calibrated units.
    added = (loud.map - quiet.map) * calibration.unit
    assert added[3, 4] == pytest.approx(0.5 / PROBABILITY_UNIT_FLOOR, rel=1e-5)
    assert np.count_nonzero(added) == 1
    assert loud.score > quiet.score + 4.0 / calibration.unit


def test_probability_scale_follows_a_noisy_adapter_above_the_floor() -> None:
    noisy = [np.full((8, 8), 0.3, np.float32)]
    assert probability_scale(noisy) == pytest.approx(0.3)
    assert probability_scale([np.zeros((8, 8), np.float32)]) == PROBABILITY_UNIT_FLOOR
    with pytest.raises(UserError):
        probability_scale([])
    with pytest.raises(UserError, match="NaN"):
        probability_scale([np.full((8, 8), np.nan, np.float32)])
