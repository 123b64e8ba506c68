"""ImageNet CNNs from pip packages: pretrained trunks and PatchCore-style few-shot backbones.

Why: these are the only real pretrained image weights that reach an air-gapped station
without a bundle (see :mod:`workstation.experts.imagenet_weights`). They serve twice:

- as a few-shot backbone (:class:`ImageNetCnnBackbone`, names ``efficientnet-lite0``,
  ``-lite1``, ``-lite2``, ``mobilenet-v2`` and ``vgg16-hed``): PatchCore's recipe. The
  outputs of a few stages are each averaged over a 3x3 neighbourhood on their own grid
  (local context, as PatchCore's aggregation), brought to one stride-8 grid (bilinear up
  from coarser stages, box mean down from finer ones), normalised to unit length per
  stage and concatenated, so every stage counts the same and distances are cosine
  distances;
- as an ImageNet-initialised encoder (:func:`imagenet_trunk`), e.g. for a segmentation
  network trained on the product's own images.

Stages are numbered from 1, as timm's ``feature_info`` numbers EfficientNet stages and as
VGG names its blocks (stage 3 of VGG16 ends at conv3_3). The catalogue says which stages a
backbone reads; ``NAME@S,T`` (e.g. ``efficientnet-lite0@2,3``) reads stages S and T
instead, wherever a backbone is named, so other choices can be measured with ``eval``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workstation.core.errors import UserError
from workstation.experts.backbones.tensors import DEFAULT_BATCH, Precision, TorchRunner
from workstation.pretrained.catalog import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    STAGE_SEPARATOR,
    catalog_names,
    get_entry,
)

IMAGENET_CNN_NAMES: tuple[str, ...] = catalog_names("imagenet")
PATCH_STRIDE = 8
"""Input pixels per feature cell, whichever stages are read."""


@dataclass(frozen=True)
class TrunkLayout:
    """What each stage of a trunk puts out, and what input it expects.

    ``mean`` / ``std`` are per RGB channel on the 0..1 scale: the trunk's input is
    ``(rgb / 255 - mean) / std``, exactly what the weights were trained with.
    ``pyramid`` is the last stage at each distinct stride (an encoder's skip outputs).
    """

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    pyramid: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_TF_LITE_MEAN = 127.0 / 255.0  # TF EfficientNet-Lite input: (x - 127) / 128 on 0..255
_TF_LITE_STD = 128.0 / 255.0

LAYOUTS: dict[str, TrunkLayout] = {
    "efficientnet-lite0": TrunkLayout(
        channels=(16, 24, 40, 80, 112, 192, 320),
        strides=(2, 4, 8, 16, 16, 32, 32),
        pyramid=(1, 2, 3, 5, 7),
        mean=(_TF_LITE_MEAN,) * 3,
        std=(_TF_LITE_STD,) * 3,
    ),
    "efficientnet-lite1": TrunkLayout(  # Lite0's widths, deeper stages
        channels=(16, 24, 40, 80, 112, 192, 320),
        strides=(2, 4, 8, 16, 16, 32, 32),
        pyramid=(1, 2, 3, 5, 7),
        mean=(_TF_LITE_MEAN,) * 3,
        std=(_TF_LITE_STD,) * 3,
    ),
    "efficientnet-lite2": TrunkLayout(  # deeper and 1.1x wider
        channels=(16, 24, 48, 88, 120, 208, 352),
        strides=(2, 4, 8, 16, 16, 32, 32),
        pyramid=(1, 2, 3, 5, 7),
        mean=(_TF_LITE_MEAN,) * 3,
        std=(_TF_LITE_STD,) * 3,
    ),
    # torchvision's inverted-residual groups between stride changes and channel changes, cut
    # as EfficientNet's seven stages are: features[0:2], [2:4], [4:7], [7:11], [11:14],
    # [14:17], [17:18]; the 1280-channel head (features[18]) is never read.
    "mobilenet-v2": TrunkLayout(
        channels=(16, 24, 32, 64, 96, 160, 320),
        strides=(2, 4, 8, 16, 16, 32, 32),
        pyramid=(1, 2, 3, 5, 7),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ),
    "vgg16-hed": TrunkLayout(
        channels=(64, 128, 256, 512, 512),
        strides=(1, 2, 4, 8, 16),
        pyramid=(1, 2, 3, 4, 5),
        # Caffe HED: 0..255 RGB minus the channel means, no scaling.
        mean=(122.67892 / 255.0, 116.66877 / 255.0, 104.00699 / 255.0),
        std=(1.0 / 255.0,) * 3,
    ),
}


def layout(name: str) -> TrunkLayout:
    if name not in LAYOUTS:
        raise UserError(
            f"unknown ImageNet CNN {name!r}; known: {', '.join(IMAGENET_CNN_NAMES)}"
        )
    return LAYOUTS[name]


def input_normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per RGB channel on the 0..1 scale for trunk ``name``.

    Feed ``(rgb_uint8 / 255 - mean) / std`` as (B, 3, H, W) float32 in RGB order; e.g.
    ``workstation.experts.backbones.tensors.images_to_tensor(images, stride=32, mean=mean,
    std=std)``. EfficientNet-Lite0 wants TF's ``(x - 127) / 128``, VGG16-HED Caffe's
    mean-subtracted 0..255 values: not the usual ImageNet mean/std.
    """
    spec = layout(name)
    return spec.mean, spec.std


class ImageNetTrunk(nn.Module):
    """A pretrained CNN cut into stages; ``forward`` returns the chosen stages' outputs.

    Stages after the deepest chosen one are not kept, so a shallow encoder does not pay
    for the rest of the network.
    """

    def __init__(self, stages: Sequence[nn.Module], out_stages: Sequence[int]) -> None:
        super().__init__()
        self.out_stages = tuple(out_stages)
        self.stages = nn.ModuleList(stages[: max(self.out_stages)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for number, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if number in self.out_stages:
                outputs.append(x)
        return outputs


_MOBILENET_STAGE_STARTS = (0, 2, 4, 7, 11, 14, 17, 18)


def _stages(name: str, *, pretrained: bool) -> list[nn.Module]:
    from workstation.experts.imagenet_weights import (
        efficientnet_lite,
        hed_network,
        mobilenet_v2,
        vgg16_block_ends,
    )

    architecture = get_entry(name).architecture
    if architecture.startswith("tf_efficientnet_lite"):
        model: Any = efficientnet_lite(name, pretrained=pretrained)
        stem = nn.Sequential(model.conv_stem, model.bn1, model.blocks[0])
        return [stem, *model.blocks[1:]]
    if architecture == "mobilenet_v2":
        features = mobilenet_v2(pretrained=pretrained).features
        return [features[a:b] for a, b in pairwise(_MOBILENET_STAGE_STARTS)]
    features = hed_network(pretrained=pretrained).features
    starts = [0, *(end + 1 for end in vgg16_block_ends()[:-1])]
    ends = [end + 1 for end in vgg16_block_ends()]
    return [features[start:end] for start, end in zip(starts, ends, strict=True)]


def _check_stages(name: str, stages: Sequence[int]) -> tuple[int, ...]:
    count = len(layout(name).channels)
    chosen = tuple(sorted(set(int(s) for s in stages)))
    if not chosen or chosen[0] < 1 or chosen[-1] > count:
        raise UserError(
            f"{name} has stages 1..{count}; got {list(stages)}"
        )
    return chosen


def imagenet_trunk(
    name: str, *, stages: Sequence[int] | None = None, pretrained: bool = True
) -> tuple[ImageNetTrunk, tuple[int, ...], tuple[int, ...]]:
    """The ImageNet-pretrained trunk of ``name`` and what its outputs are.

    Returns ``(trunk, channels, strides)``. ``trunk`` is an ``nn.Module`` in eval mode, on
    the CPU, with trainable parameters (move it, call ``.train()`` and fine-tune as you
    like). ``trunk(x)`` takes ``x`` of shape (B, 3, H, W), normalised as
    :func:`input_normalisation` says, and returns a list with one feature map per chosen
    stage, in stage order: entry ``i`` has shape ``(B, channels[i], ceil(H / strides[i]),
    ceil(W / strides[i]))`` (exactly ``H / strides[i]`` when H and W are multiples of the
    largest stride, 32 for EfficientNet-Lite0 and 16 for VGG16-HED: use such sizes for
    clean skip connections).

    ``stages`` are 1-based stage numbers (see :data:`LAYOUTS`); the default is the
    layout's ``pyramid``: EfficientNet-Lite0 strides 2, 4, 8, 16, 32 with 16, 24, 40,
    112, 320 channels; VGG16-HED strides 1, 2, 4, 8, 16 with 64, 128, 256, 512, 512
    channels. EfficientNet stage outputs are linear (BatchNorm, no activation); VGG16's
    are after ReLU. EfficientNet's BatchNorm statistics come from ImageNet: with the small
    batches of a training round, keep its BatchNorm layers in eval mode (frozen
    statistics) while the weights fine-tune. ``pretrained=False`` builds the same network
    with random weights (for a from-scratch baseline). Raises MissingModelError (one line
    with the pip command) when the package with the weights is not installed.
    """
    spec = layout(name)
    chosen = _check_stages(name, stages or spec.pyramid)
    trunk = ImageNetTrunk(_stages(name, pretrained=pretrained), chosen).eval()
    return (
        trunk,
        tuple(spec.channels[s - 1] for s in chosen),
        tuple(spec.strides[s - 1] for s in chosen),
    )


class ImageNetCnnBackbone:
    """PatchCore-style multi-stage patch features of an ImageNet CNN (module docstring)."""

    patch_stride = PATCH_STRIDE
    feature_norm = "l2"
    """Each stage is unit length already; l2 keeps cosine geometry in the few-shot bank."""

    def __init__(
        self,
        name: str,
        *,
        device: str = "cpu",
        layers: Sequence[int] | None = None,
        aggregate: int = 3,
        precision: Precision = "auto",
        batch_size: int = DEFAULT_BATCH,
        random_init: bool = False,
    ) -> None:
        from workstation.device import resolve_device

        if aggregate < 1 or aggregate % 2 == 0:
            raise UserError("the neighbourhood size (aggregate) must be odd and >= 1")
        spec = layout(name)
        self.name = name
        self.layers = _check_stages(name, layers or get_entry(name).feature_layers)
        trunk, self.channels, self.strides = imagenet_trunk(
            name, stages=self.layers, pretrained=not random_init
        )
        self.mean, self.std = spec.mean, spec.std
        self.aggregate = aggregate
        self.size_multiple = max(PATCH_STRIDE, *self.strides)
        """Working sizes divide into whole cells of every stage read."""
        # Channels-last runs the depthwise and 3x3 convolutions about 1.3-2x faster on CPU.
        trunk = trunk.to(memory_format=torch.channels_last)
        self._runner = TorchRunner(trunk, device=resolve_device(device), precision=precision,
                                   batch_size=batch_size)

    @property
    def device(self) -> str:
        return self._runner.device

    def features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        outputs = []
        for pixels in self._runner.pixel_batches(
            images, stride=self.size_multiple, mean=self.mean, std=self.std, channels_last=True
        ):
            grid = (pixels.shape[-2] // PATCH_STRIDE, pixels.shape[-1] // PATCH_STRIDE)
            stages = self._runner.module(pixels)
            outputs.append(torch.cat([self._patch_grid(s.float(), grid) for s in stages], 1))
        return torch.cat(outputs).contiguous()

    def _patch_grid(self, stage: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        if self.aggregate > 1:
            pad = self.aggregate // 2
            stage = F.avg_pool2d(F.pad(stage, (pad,) * 4, mode="replicate"), self.aggregate,
                                 stride=1)
        if stage.shape[-2] > grid[0]:
            stage = F.adaptive_avg_pool2d(stage, grid)  # finer stage: box mean per cell
        elif stage.shape[-2:] != grid:
            stage = F.interpolate(stage, size=grid, mode="bilinear", align_corners=False)
        return F.normalize(stage, dim=1) / math.sqrt(len(self.layers))


def create_imagenet_backbone(name: str, *, device: str = "cpu", **opts: Any) -> ImageNetCnnBackbone:
    """The few-shot backbone ``name``: a catalogue name, optionally ``@`` stage numbers."""
    base, _, stages = name.partition(STAGE_SEPARATOR)
    layout(base)
    if stages:
        try:
            opts["layers"] = [int(part) for part in stages.split(",")]
        except ValueError:
            raise UserError(
                f"backbone {name!r}: after '{STAGE_SEPARATOR}' give stage numbers like 2,3"
            ) from None
    backbone = ImageNetCnnBackbone(base, device=device, **opts)
    backbone.name = name
    return backbone
