"""open_clip and DINOv2 backbones on tiny random models: shapes, layers, layouts, loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_models import TINY_CLIP_PATCH, TINY_DINO_PATCH, save_tiny_clip, save_tiny_dinov2

from workstation.core.errors import MissingModelError, UserError
from workstation.experts.backbones import BACKBONE_NAMES, create_backbone
from workstation.experts.backbones.clip import ClipBackbone, window_indices
from workstation.experts.backbones.dinov2 import Dinov2Backbone
from workstation.experts.base import Backbone, available_backbones, build_backbone
from workstation.pretrained.bundles import create_bundle, install_bundle


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_dinov2(tmp_path_factory.mktemp("models") / "tiny-dino")


@pytest.fixture(autouse=True)
def _empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not see (or depend on) a real Hugging Face cache on the machine."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


def images(n: int, size: tuple[int, int] = (64, 64), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def test_clip_features_shape_multi_layer_and_unit_norm(clip_dir: Path) -> None:
    backbone = create_backbone(str(clip_dir), layers=(1, 2, 3))
    assert isinstance(backbone, Backbone)
    assert backbone.patch_stride == TINY_CLIP_PATCH
    feats = backbone.features(images(3))
    assert feats.shape == (3, 3 * 64, 4, 4)
    assert feats.dtype == torch.float32
    assert torch.allclose(feats.norm(dim=1), torch.ones(3, 4, 4), atol=1e-5)
    single = create_backbone(str(clip_dir), layers=(3,)).features(images(3))
    assert single.shape == (3, 64, 4, 4)
    # the last layer's slice of the multi-layer features is that layer, rescaled
    assert torch.allclose(feats[:, 128:] * np.sqrt(3), single, atol=1e-5)


def test_clip_intermediate_layers_match_open_clip(clip_dir: Path) -> None:
    backbone = create_backbone(str(clip_dir), layers=(1, 2))
    batch = images(2)
    ours = backbone.features(batch)
    pixels = backbone.to_tensor(batch)
    with torch.inference_mode():
        reference = backbone.visual.forward_intermediates(
            pixels, indices=[0, 1], normalize_intermediates=True, intermediates_only=True
        )["image_intermediates"]
    expected = torch.cat([F.normalize(r, dim=1) for r in reference], dim=1) / np.sqrt(2)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_clip_global_embedding_matches_encode_image(clip_dir: Path) -> None:
    backbone = create_backbone(str(clip_dir))
    pixels = backbone.to_tensor(images(2), native=True)
    embedded = backbone.encode_image(pixels)
    with torch.inference_mode():
        reference = backbone.model.encode_image(pixels, normalize=True)
    assert torch.allclose(embedded.global_, reference, atol=1e-5)
    assert embedded.patches.shape == (2, 16, 32)
    assert embedded.grid == (4, 4)


def test_clip_handles_token_first_transformer_layout(clip_dir: Path) -> None:
    """Hooks must read block outputs right when the transformer runs sequence-first (LND)."""
    batch = images(2)
    expected = create_backbone(str(clip_dir)).features(batch)
    backbone = create_backbone(str(clip_dir))
    transformer = backbone.visual.transformer
    transformer.batch_first = False
    for block in transformer.resblocks:
        block.attn.batch_first = False
    assert torch.allclose(backbone.features(batch), expected, atol=1e-5)


def test_features_are_deterministic_and_batch_independent(clip_dir: Path, dino_dir: Path) -> None:
    batch = images(3)
    for folder in (clip_dir, dino_dir):
        backbone = create_backbone(str(folder))
        first = backbone.features(batch)
        assert torch.equal(first, backbone.features(batch))
        assert torch.allclose(backbone.features(batch[1:2])[0], first[1], atol=1e-5)


def test_any_image_size_gives_floor_grid(clip_dir: Path, dino_dir: Path) -> None:
    clip = create_backbone(str(clip_dir))
    assert clip.features(images(1, (100, 70))).shape[-2:] == (100 // 16, 70 // 16)
    assert clip.features(images(1, (8, 8))).shape[-2:] == (1, 1)  # smaller than a patch
    dino = create_backbone(str(dino_dir))
    assert dino.features(images(1, (50, 90))).shape[-2:] == (50 // 8, 90 // 8)


def test_dinov2_features_shape_and_final_norm(dino_dir: Path) -> None:
    backbone = create_backbone(str(dino_dir))
    assert isinstance(backbone, Dinov2Backbone)
    assert backbone.patch_stride == TINY_DINO_PATCH
    assert backbone.layers == (1, 2)
    feats = backbone.features(images(2))
    assert feats.shape == (2, 2 * 32, 8, 8)
    pixels = torch.stack([
        (torch.from_numpy(im).permute(2, 0, 1).float() / 255 - torch.tensor([0.485, 0.456, 0.406])
         .view(3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        for im in images(2)
    ])
    with torch.inference_mode():
        last = backbone.model(pixel_values=pixels).last_hidden_state[:, 1:]
    expected = F.normalize(last, dim=-1).transpose(1, 2).reshape(2, 32, 8, 8) / np.sqrt(2)
    assert torch.allclose(feats[:, 32:], expected, atol=1e-4)


def test_bundle_and_folder_load_the_same_model(
    clip_dir: Path, dino_dir: Path, tmp_path: Path
) -> None:
    for name, folder in (("tiny-clip", clip_dir), ("tiny-dino", dino_dir)):
        install_bundle(create_bundle(name, tmp_path / f"{name}.zip", folder=folder))
        from_bundle = create_backbone(name)
        assert from_bundle.name == name
        batch = images(2)
        from_folder = create_backbone(str(folder))
        assert torch.equal(from_bundle.features(batch), from_folder.features(batch))


def test_registry_builds_from_folder_and_lists_catalogue(clip_dir: Path) -> None:
    assert {"dinov2-small", "dinov2-base", "clip-b16-plus", "clip-l14-336"} <= set(BACKBONE_NAMES)
    assert set(BACKBONE_NAMES) <= set(available_backbones())
    assert isinstance(build_backbone(str(clip_dir), device="cpu"), ClipBackbone)


def test_missing_catalogue_weights_raise_one_clear_message() -> None:
    with pytest.raises(MissingModelError) as caught:
        build_backbone("dinov2-small")
    message = str(caught.value)
    assert "\n" not in message
    assert "models download dinov2-small" in message
    assert "models bundle dinov2-small" in message and "models install" in message


def test_random_init_builds_the_catalogue_architecture_without_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workstation.experts.backbones import loading

    # the official sizes, checked here; the build below is shrunk to keep the test fast
    assert loading._DINOV2_SIZES["dinov2-small"] == {
        "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6
    }
    monkeypatch.setitem(
        loading._DINOV2_SIZES, "dinov2-small",
        {"hidden_size": 24, "num_hidden_layers": 12, "num_attention_heads": 2},
    )
    backbone = create_backbone("dinov2-small", random_init=True)
    assert backbone.patch_stride == 14 and backbone.layers == (8, 12)
    assert backbone.features(images(1, (28, 42))).shape == (1, 2 * 24, 2, 3)


@pytest.mark.parametrize(
    ("batch", "words"),
    [
        ([], "no images"),
        ([np.zeros((64, 64, 3), np.uint8), np.zeros((32, 64, 3), np.uint8)], "one size"),
        ([np.zeros((64, 64), np.uint8)], "RGB"),
        ([np.zeros((64, 64, 3), np.float32)], "uint8"),
    ],
)
def test_bad_batches_are_user_errors(clip_dir: Path, batch: list[np.ndarray], words: str) -> None:
    with pytest.raises(UserError, match=words):
        create_backbone(str(clip_dir)).features(batch)


def test_bad_layers_and_non_backbones_are_user_errors(clip_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"within 1\.\.3"):
        create_backbone(str(clip_dir), layers=(4,))
    with pytest.raises(UserError, match="vision-language"):
        create_backbone("qwen2.5-vl-3b", random_init=True)
    with pytest.raises(UserError, match="does not exist"):
        create_backbone(str(tmp_path / "nowhere"))


def test_window_indices_cover_squares_row_major() -> None:
    index = window_indices((2, 3), 2)
    assert index.tolist() == [[0, 1, 3, 4], [1, 2, 4, 5]]
    assert window_indices((4, 4), 9).shape == (1, 16)  # clamped to the grid
