"""The two contracts every vision expert is built from, and the backbone registry.

A *backbone* turns RGB images into a grid of patch features; an *expert* turns images into
:class:`~workstation.core.types.AnomalyMap` values after seeing a few normal images (or only
words). Keeping these two small protocols is what lets the filter bank, DINOv2 and CLIP
backbones, the few-shot, zero-shot and learned-adapter experts, and the fusion mix freely.

Backbones other than the built-in weight-free ``filterbank`` live in
``workstation.experts.backbones`` (open_clip / transformers), imported only when one is
asked for so that the weight-free path never pays for those libraries. That module
provides::

    create_backbone(name: str, *, device: str = "cpu", **opts) -> Backbone
        # raises UserError for an unknown name, MissingModelError for missing weights
    BACKBONE_NAMES: tuple[str, ...]   # the names it accepts, for help texts and errors
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from workstation.core.errors import UserError
from workstation.core.types import AnomalyMap

if TYPE_CHECKING:
    import torch

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``; called from the worker that does the work."""

BUILTIN_BACKBONES: tuple[str, ...] = ("filterbank",)
EXTERNAL_BACKBONE_MODULE = "workstation.experts.backbones"


@runtime_checkable
class Backbone(Protocol):
    """Patch feature extractor.

    ``features`` takes RGB uint8 images already resized to the expert's working size (all
    the same size within one call) and returns ``(B, C, h, w)`` float32 features on the
    backbone's device, one vector per patch, multi-layer outputs already concatenated and
    normalised. ``patch_stride`` is how many input pixels one feature cell spans.
    """

    name: str
    patch_stride: int

    def features(self, images: Sequence[np.ndarray]) -> torch.Tensor: ...


@runtime_checkable
class Expert(Protocol):
    """Anything that scores images: fit on normal references, predict image-sized maps."""

    name: str

    def fit(self, normals: Sequence[np.ndarray], *, progress: ProgressFn | None = None) -> None:
        ...

    def predict(self, images: Sequence[np.ndarray]) -> list[AnomalyMap]:
        """One map per image, each at that image's own (H, W)."""
        ...


def available_backbones() -> tuple[str, ...]:
    """Every backbone name this installation knows (weights may still be missing)."""
    try:
        module = importlib.import_module(EXTERNAL_BACKBONE_MODULE)
    except ModuleNotFoundError:
        return BUILTIN_BACKBONES
    return BUILTIN_BACKBONES + tuple(getattr(module, "BACKBONE_NAMES", ()))


def build_backbone(name: str, *, device: str = "cpu", **opts: Any) -> Backbone:
    """Create the backbone called ``name`` on ``device``; unknown names are a UserError."""
    if name == "filterbank":
        from workstation.experts.filterbank import FilterBankBackbone

        return FilterBankBackbone(device=device, **opts)
    try:
        module = importlib.import_module(EXTERNAL_BACKBONE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != EXTERNAL_BACKBONE_MODULE:
            raise
        raise UserError(
            f"unknown backbone {name!r}; this installation offers: "
            f"{', '.join(BUILTIN_BACKBONES)}"
        ) from None
    return module.create_backbone(name, device=device, **opts)
