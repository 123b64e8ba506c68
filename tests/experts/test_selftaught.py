"""The self-taught expert as a model folder: shapes, persistence, refusals, and how the
pipeline calibrates it on normals it never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_parts import textured

from workstation.experts.fewshot import FewShotConfig
from workstation.experts.pipeline import InspectionPipeline, PipelineConfig
from workstation.experts.selftaught import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    LiteUNet,
    NormalFingerprints,
    SelfTaughtConfig,
    SelfTaughtError,
    SelfTaughtExpert,
)


def _expert(
    shape: tuple[int, int] = (48, 80), seen: list[np.ndarray] | None = None
) -> SelfTaughtExpert:
    torch.manual_seed(0)
    config = SelfTaughtConfig(shape=shape, mean=(120, 120, 120), std=(40, 40, 40), width=4)
    return SelfTaughtExpert(
        LiteUNet(4), config, fingerprints=NormalFingerprints.of(seen or [])
    )


def test_maps_come_back_at_each_images_own_size_with_a_peak_score() -> None:
    expert = _expert()
    images = [textured(1, size=96), textured(2, size=64)[:50]]
    maps = expert.predict(images)
    assert [m.map.shape for m in maps] == [(96, 96), (50, 64)]
    for amap in maps:
        assert amap.map.min() >= 0.0 and amap.map.max() <= 1.0
        assert 0.0 <= amap.score <= 1.0 and amap.expert == "selftaught"


def test_a_saved_model_loads_and_predicts_the_same(tmp_path: Path) -> None:
    shots = [textured(seed) for seed in range(3)]
    expert = _expert(seen=shots[:2])
    expert.save(tmp_path / "model")
    loaded = SelfTaughtExpert.load(tmp_path / "model")
    probe = [textured(9)]
    assert np.allclose(expert.predict(probe)[0].map, loaded.predict(probe)[0].map, atol=1e-6)
    assert loaded.has_seen(shots[0]) and loaded.has_seen(shots[1])
    assert not loaded.has_seen(shots[2])


def test_the_fingerprint_recognises_the_same_image_decoded_at_another_size() -> None:
    import cv2

    image = textured(4, size=192)
    half = cv2.resize(image, (96, 96), interpolation=cv2.INTER_AREA)
    prints = NormalFingerprints.of([half])
    assert prints.contains(image)
    other = np.clip(textured(5, size=192).astype(int) + 25, 0, 255).astype(np.uint8)
    assert not prints.contains(other)


def test_another_architecture_or_damaged_files_are_refused_clearly(tmp_path: Path) -> None:
    folder = _expert().save(tmp_path / "model")
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["architecture"] = "lite-unet/0"
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(SelfTaughtError, match="train a new self-taught round"):
        SelfTaughtExpert.load(folder)

    folder = _expert().save(tmp_path / "damaged")
    (folder / WEIGHTS_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(SelfTaughtError, match=r"do not fit|train"):
        SelfTaughtExpert.load(folder)

    with pytest.raises(SelfTaughtError, match="not a self-taught model folder"):
        SelfTaughtExpert.load(tmp_path / "missing")
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / CONFIG_FILE).write_text("{ nope")
    with pytest.raises(SelfTaughtError, match="unreadable"):
        SelfTaughtExpert.load(tmp_path / "garbled")


def test_a_working_shape_off_the_network_grid_is_refused() -> None:
    with pytest.raises(SelfTaughtError, match="multiple of 16"):
        SelfTaughtConfig(shape=(50, 64), mean=(0, 0, 0), std=(1, 1, 1))


def _pipeline(folder: Path, experts: tuple[str, ...] = ("fewshot",)) -> InspectionPipeline:
    # the fixed fusion: these tests are about calibrating the network, not the choice
    # (test_fusion_choice.py), which would leave this untrained network out
    config = PipelineConfig(
        experts=experts,
        fewshot=FewShotConfig(image_size=64),
        trained={"selftaught": str(folder)},
        select=False,
    )
    return InspectionPipeline(config)


def test_the_pipeline_calibrates_the_network_on_normals_it_did_not_train_on(
    tmp_path: Path,
) -> None:
    shots = [textured(seed) for seed in range(6)]
    folder = _expert(seen=shots[:4]).save(tmp_path / "model")
    pipeline = _pipeline(folder)
    calibration = pipeline.fit(shots)
    assert calibration.threshold.n == 2
    assert not calibration.threshold.optimistic
    assert {n.name for n in calibration.norms} == {"fewshot", "selftaught"}
    assert [n.additive for n in calibration.norms if n.name == "selftaught"] == [True]
    fused = pipeline.predict([textured(20)])[0]
    assert fused.expert == "fewshot+selftaught" and fused.threshold == 1.0

    # Trained on every normal: calibrated anyway, and the statement says it may be low.
    folder = _expert(seen=shots).save(tmp_path / "all-seen")
    calibration = _pipeline(folder).fit(shots)
    assert calibration.threshold.optimistic
    assert "may be too low" in calibration.threshold.statement()


def test_the_network_alone_is_a_valid_pipeline(tmp_path: Path) -> None:
    shots = [textured(seed) for seed in range(4)]
    folder = _expert(seen=shots[:2]).save(tmp_path / "model")
    pipeline = _pipeline(folder, experts=())
    pipeline.fit(shots)
    result = pipeline.predict([textured(30)])[0]
    assert result.expert == "selftaught" and result.map.shape == (96, 96)
    pipeline.save(tmp_path / "pipeline")
    again = InspectionPipeline.load(tmp_path / "pipeline")
    assert again.predict([textured(30)])[0].score == pytest.approx(result.score, rel=1e-5)
