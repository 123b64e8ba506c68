"""Zero-shot expert mechanics on a tiny random CLIP (quality is meaningless with random weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import save_tiny_clip

from workstation.core.errors import UserError
from workstation.core.types import Product
from workstation.experts.backbones import build_clip_backbone
from workstation.experts.backbones.clip import ClipBackbone
from workstation.experts.base import Expert
from workstation.experts.zeroshot import (
    TEMPLATES,
    ZeroShotConfig,
    ZeroShotExpert,
    build_prompts,
    harmonic_patch_scores,
    object_phrase,
)

PRODUCT = Product(
    id=1,
    name="ball_screw_drive",
    description="Steel spindle of a linear drive, photographed from the side.",
    defect_vocabulary=("pitting", "deep_scratch"),
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipBackbone:
    return build_clip_backbone(str(save_tiny_clip(tmp_path_factory.mktemp("m") / "tiny-clip")))


def test_prompts_use_name_description_and_vocabulary() -> None:
    prompts = build_prompts(PRODUCT)
    assert object_phrase(PRODUCT) == "ball screw drive"
    assert "a cropped photo of the flawless ball screw drive." in prompts.normal
    assert "a photo of a ball screw drive with pitting." in prompts.anomalous
    assert any("ball screw drive with deep scratch" in p for p in prompts.anomalous)
    assert not any("pitting" in p for p in prompts.normal)
    described = [p for p in prompts.normal + prompts.anomalous if PRODUCT.description in p]
    assert len(described) == 7 + 5 + 2  # one per state: normal, anomalous, vocabulary
    plain = build_prompts(Product(id=2, name="widget"))
    assert len(plain.normal) == 7 * len(TEMPLATES) and len(plain.anomalous) == 5 * len(TEMPLATES)
    assert len(set(plain.normal)) == len(plain.normal)


def test_predict_gives_image_sized_maps_for_any_input(clip: ClipBackbone) -> None:
    expert = ZeroShotExpert(clip, PRODUCT)
    assert isinstance(expert, Expert)
    expert.fit([])  # no normal images needed
    rng = np.random.default_rng(0)
    inputs = [
        rng.integers(0, 256, (80, 120, 3), dtype=np.uint8),
        rng.integers(0, 256, (50, 40), dtype=np.uint8),  # gray
        rng.integers(0, 65535, (64, 64, 4), dtype=np.uint16),  # 16-bit RGBA
        np.full((70, 70, 3), 128, np.uint8),  # constant
    ]
    maps = expert.predict(inputs)
    assert [m.map.shape for m in maps] == [(80, 120), (50, 40), (64, 64), (70, 70)]
    for result in maps:
        assert result.map.dtype == np.float32 and np.isfinite(result.map).all()
        assert result.map.min() >= 0.0 and result.map.max() <= 1.0
        assert 0.0 <= result.score <= 1.0 and result.expert == "zeroshot"


def test_predict_is_deterministic_and_batch_independent(clip: ClipBackbone) -> None:
    rng = np.random.default_rng(1)
    inputs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    expert = ZeroShotExpert(clip, PRODUCT, ZeroShotConfig(batch_size=2))
    first = expert.predict(inputs)
    again = ZeroShotExpert(clip, PRODUCT).predict(inputs)
    alone = expert.predict(inputs[2:])
    for a, b in zip(first, again, strict=True):
        assert np.allclose(a.map, b.map, atol=1e-6) and a.score == pytest.approx(b.score, abs=1e-6)
    assert np.allclose(alone[0].map, first[2].map, atol=1e-5)


def test_trimmed_text_encoding_equals_open_clips(clip: ClipBackbone) -> None:
    prompts = ["a photo of a screw.", "a close-up photo of the ball screw drive with pitting."]
    assert clip._can_trim_text()
    with torch.inference_mode():
        expected = clip.model.encode_text(clip.tokenizer(prompts), normalize=True)
    assert torch.allclose(clip.encode_text(prompts), expected, atol=1e-5)


def test_text_features_are_two_unit_class_vectors(clip: ClipBackbone) -> None:
    text = ZeroShotExpert(clip, PRODUCT).text_features()
    assert text.shape == (2, 32)
    assert torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)
    other = ZeroShotExpert(clip, Product(id=3, name="gear")).text_features()
    assert not torch.allclose(text, other)  # the product's words change the classes


def test_window_embedding_sees_only_its_window(clip: ClipBackbone) -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    changed = image.copy()
    changed[32:, 32:] = 255 - changed[32:, 32:]  # bottom-right 2x2 patches of the 4x4 grid
    pixels = clip.to_tensor([image, changed], native=True)
    embeddings, index = clip.encode_windows(pixels, 2)
    untouched = [w for w, patches in enumerate(index) if all(p % 4 < 2 or p < 8 for p in patches)]
    touched = [w for w, patches in enumerate(index) if any(p % 4 >= 2 and p >= 8 for p in patches)]
    assert untouched and touched
    assert torch.allclose(embeddings[0, untouched], embeddings[1, untouched], atol=1e-5)
    assert not torch.allclose(embeddings[0, touched], embeddings[1, touched], atol=1e-3)


def test_harmonic_aggregation_by_hand() -> None:
    # grid 2 x 3, two 2 x 2 windows: columns {0, 1} and {1, 2}
    index = np.array([[0, 1, 3, 4], [1, 2, 4, 5]])
    scores = torch.tensor([[0.2, 0.8]])
    patch = harmonic_patch_scores(scores, index, 6)[0]
    middle = 2 / (1 / 0.2 + 1 / 0.8)
    assert torch.allclose(patch, torch.tensor([0.2, middle, 0.8, 0.2, middle, 0.8]))


def test_windows_larger_than_the_grid_are_skipped_or_refused(clip: ClipBackbone) -> None:
    image = [np.zeros((64, 64, 3), np.uint8)]
    maps = ZeroShotExpert(clip, PRODUCT, ZeroShotConfig(windows=(9,))).predict(image)
    assert maps[0].map.shape == (64, 64)
    only_big = ZeroShotExpert(clip, PRODUCT, ZeroShotConfig(windows=(9,), use_patch_map=False))
    with pytest.raises(UserError, match="larger than the 4x4 patch grid"):
        only_big.predict(image)
    with pytest.raises(UserError):
        ZeroShotConfig(windows=(), use_patch_map=False)


def test_zero_shot_needs_a_clip_model(tmp_path: Path) -> None:
    from tiny_models import save_tiny_dinov2

    folder = save_tiny_dinov2(tmp_path / "dino")
    with pytest.raises(UserError, match="not a CLIP model"):
        build_clip_backbone(str(folder))
