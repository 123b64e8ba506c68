"""Learned segmentation adapter: a small head on frozen backbone patch features.

Trained by ``training.adapter`` from inspector-corrected masks and normal images
(APRIL-GAN-style per-patch projection predicting a mask logit). The backbone never changes,
so the head is tiny, trains in seconds even on the weight-free filter bank, and its map joins
the few-shot map in the fusion. Features are standardised with statistics of the training
set, stored with the head, so it does not depend on each backbone's feature scale.

An adapter folder holds ``adapter.pt`` (state dict) and ``adapter.json`` (the config naming
the backbone and feature size). Loading checks both, so an adapter trained on another
backbone is refused with a clear message instead of producing nonsense maps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from workstation.core.errors import UserError
from workstation.core.types import AnomalyMap
from workstation.experts.base import Backbone, build_backbone
from workstation.experts.features import grid_to_map, resize_rgb, to_rgb_uint8, working_shape
from workstation.experts.fewshot import top_percent_mean
from workstation.experts.fusion import normal_quantile, probability_scale
from workstation.experts.model_folder import read_model_config

if TYPE_CHECKING:
    from workstation.experts.pipeline import InspectionPipeline

SMOOTHING = 0.5
"""Map smoothing sigma in patch strides, as the few-shot expert uses."""

ADAPTER_FORMAT = "iad-segmentation-adapter/1"
CONFIG_FILE = "adapter.json"
WEIGHTS_FILE = "adapter.pt"


class AdapterMismatchError(UserError):
    """The adapter was trained for another backbone, feature size or base model."""


@dataclass(frozen=True)
class AdapterConfig:
    backbone: str
    feature_dim: int
    hidden: int
    shape: tuple[int, int]
    """Working (H, W) the backbone sees, as chosen by ``features.working_shape``."""
    patch_stride: int
    base_model: str = ""
    format: str = ADAPTER_FORMAT

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))


class SegmentationHead(nn.Module):
    """Per-patch projection: standardise, then 1x1 convolutions to one anomaly logit."""

    def __init__(self, feature_dim: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, feature_dim, 1, 1))
        self.register_buffer("std", torch.ones(1, feature_dim, 1, 1))
        if hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Conv2d(feature_dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, 1, 1)
            )
        else:
            self.net = nn.Conv2d(feature_dim, 1, 1)

    def set_statistics(self, features: torch.Tensor, *, chunk: int = 16) -> None:
        """Per-channel mean and std, accumulated in float64 a few images at a time, so
        half-precision training caches need no full-precision copy."""
        total = torch.zeros(features.shape[1], dtype=torch.float64, device=features.device)
        squares = torch.zeros_like(total)
        for part in features.split(chunk):
            values = part.to(torch.float64)
            total += values.sum(dim=(0, 2, 3))
            squares += (values * values).sum(dim=(0, 2, 3))
        count = features.shape[0] * features.shape[2] * features.shape[3]
        mean = total / count
        variance = (squares - count * mean * mean) / max(count - 1, 1)
        self.mean.copy_(mean.view(1, -1, 1, 1).float())
        self.std.copy_(variance.clamp_min(0).sqrt().view(1, -1, 1, 1).float().clamp_min(1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std)


def save_adapter(head: SegmentationHead, config: AdapterConfig, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.cpu() for k, v in head.state_dict().items()}, folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2), encoding="utf-8")


def read_adapter_config(folder: Path) -> AdapterConfig:
    return read_model_config(
        folder,
        AdapterConfig,
        file=CONFIG_FILE,
        format=ADAPTER_FORMAT,
        label="adapter",
        error=AdapterMismatchError,
    )


def check_compatible(
    config: AdapterConfig,
    *,
    backbone: str,
    feature_dim: int | None = None,
    base_model: str | None = None,
) -> None:
    """Refuse an adapter that would read features it was not trained on."""
    if config.backbone != backbone:
        raise AdapterMismatchError(
            f"this adapter was trained on the {config.backbone!r} backbone but the experts use "
            f"{backbone!r}; train a new adapter round or switch the backbone back"
        )
    if feature_dim is not None and config.feature_dim != feature_dim:
        raise AdapterMismatchError(
            f"this adapter expects {config.feature_dim}-dimensional features but the "
            f"{backbone!r} backbone gives {feature_dim}; train a new adapter round"
        )
    if base_model and config.base_model and config.base_model != base_model:
        raise AdapterMismatchError(
            f"this adapter was trained on base model {config.base_model!r}, not {base_model!r}; "
            "train a new adapter round"
        )


def load_adapter(
    folder: Path,
    *,
    backbone: str,
    feature_dim: int | None = None,
    base_model: str | None = None,
    device: str = "cpu",
) -> tuple[SegmentationHead, AdapterConfig]:
    config = read_adapter_config(folder)
    check_compatible(config, backbone=backbone, feature_dim=feature_dim, base_model=base_model)
    head = SegmentationHead(config.feature_dim, config.hidden)
    state = torch.load(Path(folder) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    head.load_state_dict(state)
    return head.to(device).eval(), config


def adapter_shape(
    backbone: Backbone, shapes: Sequence[tuple[int, int]], image_size: int
) -> tuple[int, int]:
    """The working shape for these images, rounded the way the backbone needs."""
    multiple = int(getattr(backbone, "size_multiple", backbone.patch_stride))
    return working_shape(shapes, image_size=image_size, multiple=multiple)


def extract_features(
    backbone: Backbone,
    images: Sequence[np.ndarray],
    *,
    shape: tuple[int, int],
    batch_size: int = 8,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Frozen backbone features ``(N, C, h, w)`` of images resized to ``shape``, in batches.

    A training round caches every example's features, so it asks for float16: half the
    memory (about 1.5 MB per image on a 1024 px grid of the filter bank) for a head that
    standardises its inputs anyway.
    """
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = [
                resize_rgb(to_rgb_uint8(im), shape) for im in images[start : start + batch_size]
            ]
            chunks.append(backbone.features(batch).to(dtype))
    return torch.cat(chunks)


class AdapterExpert:
    """Expert protocol over a trained head: the map is the defect probability per pixel.

    It needs no normal references (``fit`` is a no-op): it learned what defects look like
    from the inspectors' masks. The image score is the mean of the top 1 % of patch scores.
    """

    name = "adapter"

    def __init__(self, backbone: Backbone, head: SegmentationHead, config: AdapterConfig) -> None:
        self.backbone = backbone
        self.head = head
        self.config = config

    @classmethod
    def load(
        cls, folder: Path, backbone: Backbone, *, base_model: str | None = None
    ) -> AdapterExpert:
        device = str(getattr(backbone, "device", "cpu"))
        head, config = load_adapter(
            folder, backbone=backbone.name, base_model=base_model, device=device
        )
        return cls(backbone, head, config)

    def fit(self, normals: Sequence[np.ndarray], *, progress: object = None) -> None:
        del normals, progress

    def features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return extract_features(self.backbone, images, shape=self.config.shape)

    def predict_features(
        self, features: torch.Tensor, sizes: Sequence[tuple[int, int]]
    ) -> list[AnomalyMap]:
        """Maps from features already extracted at ``config.shape`` (reused across heads)."""
        if features.shape[1] != self.config.feature_dim:
            raise AdapterMismatchError(
                f"this adapter expects {self.config.feature_dim}-dimensional features but the "
                f"{self.backbone.name!r} backbone gives {features.shape[1]}; "
                "train a new adapter round"
            )
        with torch.inference_mode():
            prob = torch.sigmoid(self.head(features.to(self.head.mean.device)))[:, 0]
        out = []
        for grid, (h, w) in zip(prob.cpu().numpy(), sizes, strict=True):
            scale = np.sqrt(h * w / (self.config.shape[0] * self.config.shape[1]))
            sigma = SMOOTHING * self.config.patch_stride * scale
            heat = grid_to_map(grid, (h, w), sigma=sigma)
            out.append(AnomalyMap(map=heat, score=top_percent_mean(grid, 1.0), expert=self.name))
        return out

    def predict(self, images: Sequence[np.ndarray]) -> list[AnomalyMap]:
        return self.predict_features(self.features(images), [im.shape[:2] for im in images])


def base_scale(normal_maps: Sequence[np.ndarray]) -> float:
    """Pixel value the base expert's map reaches on normal images (its 99th percentile).

    Dividing by it puts the base map in "1 = as high as normal texture gets" units;
    ``probability_scale`` puts the adapter's probability in the same units, so the two can
    be added without either drowning the other.
    """
    return max(normal_quantile(normal_maps), 1e-6)


@dataclass(frozen=True)
class JoinScales:
    """Normal-relative units of the base map and of the adapter's probability."""

    base: float
    adapter: float

    @classmethod
    def measure(
        cls, base_normals: Sequence[np.ndarray], adapter_normals: Sequence[np.ndarray]
    ) -> JoinScales:
        """From maps of normal images that neither expert memorised or trained on."""
        return cls(base_scale(base_normals), probability_scale(adapter_normals))


def join_adapter(base: AnomalyMap, adapter: AnomalyMap, *, scales: JoinScales) -> AnomalyMap:
    """The adapter's map joins a base (few-shot or fused) map, both in normal units."""
    heat = base.map / scales.base + adapter.map / scales.adapter
    return AnomalyMap(
        map=heat.astype(np.float32),
        score=base.score / scales.base + adapter.score / scales.adapter,
        expert=f"{base.expert}+{adapter.expert}",
    )


def attach(pipeline: InspectionPipeline, folder: Path) -> None:
    """Add a trained adapter to ``pipeline`` (its registration in ``core.kinds``): on the
    few-shot expert's backbone when it is the one the head was trained on, else on its
    own copy of the right one."""
    wanted = read_adapter_config(folder).backbone
    shared = pipeline.bank_expert()
    backbone = getattr(shared, "backbone", None)
    if backbone is None or backbone.name != wanted:
        backbone = build_backbone(wanted, device=pipeline.device)
    pipeline.add_expert(AdapterExpert.load(folder, backbone), additive=True)
