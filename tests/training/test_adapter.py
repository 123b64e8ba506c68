"""The segmentation adapter: learns from masks, saves/loads, refuses foreign features."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_parts import textured, with_defect

from training.adapter import train_head
from training.adapter_round import fit_adapter
from training.contract import Sample
from training.data import MaskExample
from training.kinds.adapter import AdapterHyperparameters
from training.losses import dice_loss, focal_loss
from workstation.core.errors import UserError
from workstation.experts.adapter import (
    AdapterConfig,
    AdapterExpert,
    AdapterMismatchError,
    SegmentationHead,
    load_adapter,
    save_adapter,
)
from workstation.experts.base import build_backbone

FAST = AdapterHyperparameters(hidden=16, steps=60, batch_size=4, learning_rate=1e-2)


def _examples() -> list[MaskExample]:
    out = []
    for seed in range(3):
        image, mask = with_defect(10 + seed)
        out.append(MaskExample(image, mask, Sample(f"/a{seed}.png", "anomalous", mask_path="x")))
        normal = textured(20 + seed)
        out.append(
            MaskExample(
                normal, np.zeros(normal.shape[:2], np.uint8), Sample(f"/n{seed}.png", "normal")
            )
        )
    return out


def test_losses_prefer_the_right_answer() -> None:
    target = torch.zeros(1, 1, 4, 4)
    target[..., 1:3, 1:3] = 1
    good = (target * 2 - 1) * 5
    assert focal_loss(good, target, gamma=2, alpha=0.75) < focal_loss(
        -good, target, gamma=2, alpha=0.75
    )
    assert dice_loss(good, target) < dice_loss(-good, target)
    assert float(dice_loss(good, torch.zeros_like(target))) == 0.0


def test_head_learns_separable_patches() -> None:
    features = torch.randn(6, 5, 8, 8)
    targets = (features[:, :1] > 0.5).float()
    head = train_head(features, targets, hyper=FAST, seed=0)
    with torch.no_grad():
        prob = torch.sigmoid(head(features))
    assert float(prob[targets > 0].mean()) > float(prob[targets == 0].mean()) + 0.3


def test_adapter_on_filterbank_finds_the_defect_and_round_trips(tmp_path: Path) -> None:
    backbone = build_backbone("filterbank")
    expert = fit_adapter(backbone, _examples(), image_size=96, hyper=FAST, seed=0)
    image, mask = with_defect(99)
    heat = expert.predict([image])[0]
    assert heat.map.shape == mask.shape
    assert heat.map[mask > 0].mean() > heat.map[mask == 0].mean()
    assert expert.predict([textured(98)])[0].score < heat.score
    save_adapter(expert.head, expert.config, tmp_path / "a")
    again = AdapterExpert.load(tmp_path / "a", backbone)
    np.testing.assert_allclose(again.predict([image])[0].map, heat.map, atol=1e-5)


def _saved(tmp_path: Path, **config: object) -> Path:
    values: dict[str, object] = {
        "backbone": "filterbank",
        "feature_dim": 7,
        "hidden": 0,
        "shape": (32, 32),
        "patch_stride": 8,
        "base_model": "",
    }
    values.update(config)
    folder = tmp_path / "adapter"
    save_adapter(SegmentationHead(7, 0), AdapterConfig(**values), folder)  # type: ignore[arg-type]
    return folder


def test_adapter_from_another_backbone_is_refused(tmp_path: Path) -> None:
    folder = _saved(tmp_path, backbone="dinov2-small")
    with pytest.raises(AdapterMismatchError, match="trained on the 'dinov2-small' backbone"):
        AdapterExpert.load(folder, build_backbone("filterbank"))
    assert issubclass(AdapterMismatchError, UserError)


def test_feature_size_and_base_model_mismatch_are_refused(tmp_path: Path) -> None:
    folder = _saved(tmp_path, base_model="clip-b16@v1")
    with pytest.raises(AdapterMismatchError, match="expects 7-dimensional features"):
        load_adapter(folder, backbone="filterbank", feature_dim=9)
    with pytest.raises(AdapterMismatchError, match="base model 'clip-b16@v1'"):
        load_adapter(folder, backbone="filterbank", base_model="clip-b16@v2")
    expert = AdapterExpert.load(folder, build_backbone("filterbank"))
    with pytest.raises(AdapterMismatchError, match="expects 7-dimensional"):
        expert.predict([textured(1, 32)])


def test_unreadable_or_foreign_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AdapterMismatchError, match="not an adapter model folder"):
        load_adapter(tmp_path, backbone="filterbank")
    folder = _saved(tmp_path)
    raw = json.loads((folder / "adapter.json").read_text())
    (folder / "adapter.json").write_text(json.dumps(raw | {"format": "something-else/9"}))
    with pytest.raises(AdapterMismatchError, match=r"has format .something-else/9., not"):
        load_adapter(folder, backbone="filterbank")


def test_adapter_works_finer_than_the_experts_but_never_past_the_images_own_size() -> None:
    backbone = build_backbone("filterbank")
    examples = _examples()
    native = examples[0].image.shape[:2]
    coarse = fit_adapter(
        backbone, examples, image_size=48, hyper=replace(FAST, steps=1, detail=1.0), seed=0
    )
    fine = fit_adapter(backbone, examples, image_size=48, hyper=replace(FAST, steps=1), seed=0)
    capped = fit_adapter(
        backbone, examples, image_size=native[0], hyper=replace(FAST, steps=1), seed=0
    )
    assert coarse.config.shape == (48, 48)
    assert fine.config.shape == (96, 96)
    assert capped.config.shape == native
    with pytest.raises(UserError, match="detail"):
        AdapterHyperparameters(detail=0)


def test_statistics_from_a_half_precision_cache_match_full_precision() -> None:
    features = torch.randn(20, 5, 6, 7) * 3 + 10
    head = SegmentationHead(5, 0)
    head.set_statistics(features.half(), chunk=3)
    torch.testing.assert_close(
        head.mean, features.mean(dim=(0, 2, 3), keepdim=True), atol=0.01, rtol=0.003
    )
    torch.testing.assert_close(
        head.std, features.std(dim=(0, 2, 3), keepdim=True), atol=0.01, rtol=0.003
    )
    trained = train_head(features.half(), (features[:, :1] > 10).float(), hyper=FAST, seed=0)
    assert trained.mean.dtype == torch.float32
