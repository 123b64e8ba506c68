"""Learned backbones: open_clip ViTs and DINOv2 (transformers) as multi-layer patch extractors.

Both implement :class:`workstation.experts.base.Backbone`: ``features(images)`` returns
``(B, C, h, w)`` float32 where each selected block's patch tokens go through the model's
own final norm (as DINOv2's ``get_intermediate_layers(norm=True)`` and open_clip's
``normalize_intermediates`` do), are L2-normalised per layer and concatenated, scaled by
``1/sqrt(layers)`` so every location is a unit vector and squared distances are
``2 - 2 * mean cosine``. The class token (and DINOv2 registers) are dropped.

Images of any size work: they are resized to the nearest lower multiple of the patch size
(at least one patch) and the positional embeddings are interpolated, so the grid is
``(H // stride, W // stride)``.

The CLIP backbone additionally exposes what the zero-shot expert needs: projected class
and patch embeddings, WinCLIP window embeddings and the text encoder.

This package's face is the factory below (:data:`BACKBONE_NAMES`, :func:`create_backbone`,
:func:`build_clip_backbone`): the backbone registry in :mod:`workstation.experts.base`
reaches the learned backbones only through it. The pieces live in ``clip.py``,
``dinov2.py``, their shared base class in ``vit.py``, the loaders in ``loading.py`` and the
tensor plumbing (shared with the ImageNet CNNs) in ``tensors.py``.

torch / open_clip / transformers are imported inside functions: ``base.available_backbones``
imports this package just to read :data:`BACKBONE_NAMES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workstation.core.errors import UserError
from workstation.experts.backbones.clip import ClipBackbone
from workstation.experts.backbones.dinov2 import Dinov2Backbone
from workstation.experts.backbones.loading import (
    load_dinov2,
    load_open_clip,
    random_clip,
    random_dinov2,
)
from workstation.experts.backbones.tensors import DEFAULT_BATCH, Precision
from workstation.pretrained.catalog import CatalogEntry, catalog_names, get_entry
from workstation.pretrained.weights import resolve

BACKBONE_NAMES: tuple[str, ...] = catalog_names("dinov2") + catalog_names("open_clip")
"""Catalogue backbones; installed bundles and model folders are accepted by name or path too."""


def create_backbone(
    name: str,
    *,
    device: str = "cpu",
    folder: Path | str | None = None,
    layers: Sequence[int] | None = None,
    random_init: bool = False,
    precision: Precision = "auto",
    batch_size: int = DEFAULT_BATCH,
) -> ClipBackbone | Dinov2Backbone:
    """Build backbone ``name`` (catalogue name, installed bundle, or model folder path).

    ``random_init`` builds the catalogue architecture at its real size with random
    weights and no files at all: for timing benchmarks only (random weights time the
    same). ``layers`` are 1-based block indices overriding the catalogue's choice.
    Raises MissingModelError (one actionable line) when the weights are not here.
    """
    from workstation.device import resolve_device

    entry: CatalogEntry | None
    module: Any = None
    if random_init:
        catalogued = get_entry(name)
        entry, family, tokenizer_source = catalogued, catalogued.family, catalogued.architecture
        if family == "open_clip":
            module = random_clip(catalogued)
        elif family == "dinov2":
            module = random_dinov2(catalogued)
    else:
        resolved = resolve(name, folder=folder)
        name, family, entry, tokenizer_source = (
            resolved.name, resolved.family, resolved.entry, ""
        )
        if family == "open_clip":
            module, tokenizer_source = load_open_clip(resolved)
        elif family == "dinov2":
            module = load_dinov2(resolved)
    if module is None:
        raise UserError(
            f"{name!r} is a vision-language model, not a backbone; backbones are: "
            f"filterbank, {', '.join(BACKBONE_NAMES)}"
        )
    options: dict[str, Any] = {
        "name": name, "device": resolve_device(device), "entry": entry, "layers": layers,
        "precision": precision, "batch_size": batch_size,
    }
    if family == "open_clip":
        return ClipBackbone(module, tokenizer_source=tokenizer_source, **options)
    return Dinov2Backbone(module, **options)


def build_clip_backbone(name: str = "clip-b16-plus", **opts: Any) -> ClipBackbone:
    """A CLIP backbone (with text encoder) for the zero-shot expert; same options as above."""
    backbone = create_backbone(name, **opts)
    if not isinstance(backbone, ClipBackbone):
        raise UserError(f"{name!r} is not a CLIP model; the zero-shot expert needs one")
    return backbone
