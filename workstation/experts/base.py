"""The two contracts every vision expert is built from, and the backbone registry.

A *backbone* turns RGB images into a grid of patch features; an *expert* turns images into
:class:`~workstation.core.types.AnomalyMap` values after seeing a few normal images (or only
words). Keeping these two small protocols is what lets the filter bank, DINOv2 and CLIP
backbones, the few-shot, zero-shot and learned-adapter experts, and the fusion mix freely.

Backbones are built through :data:`BACKBONE_PROVIDERS`, an explicit registry checked when
each provider is registered: the weight-free ``filterbank``, the ImageNet CNNs whose
weights a pip package ships (``workstation.experts.imagenet_cnn``, listed once their
package is installed) and the learned backbones of ``workstation.experts.backbones``
(open_clip / transformers). A provider's module is
imported only when one of its backbones is asked for, so the weight-free path never pays
for those libraries, and the imports are plain statements that the import contract sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from workstation.core.errors import UserError
from workstation.core.types import AnomalyMap
from workstation.pretrained.catalog import CATALOG, STAGE_SEPARATOR, catalog_names

if TYPE_CHECKING:
    import torch

ProgressFn = Callable[[int, int], None]
StageFn = Callable[[int, int, str], None]
"""``stage(done, total, what)``: progress within a named phase of a longer job (fitting:
features, memory bank, calibration), so a caller can show each phase and its time left."""
"""``progress(done, total)``; called from the worker that does the work."""



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


BackboneFactory = Callable[..., Backbone]
"""``factory(name, *, device, **opts)``: raises UserError for a name it cannot build and
MissingModelError when the weights are not here."""


@dataclass(frozen=True)
class BackboneProvider:
    """One registered source of backbones: the names it offers and how it builds one."""

    key: str
    names: Callable[[], tuple[str, ...]]
    """The names shown in settings and errors; called only when they are listed."""
    create: BackboneFactory
    open_names: bool = False
    """Also builds names it does not list (installed bundles, model folders by path)."""
    builds: Callable[[str], bool] | None = None
    """Names it builds beyond those it lists: ImageNet CNNs whose package is missing (so
    the error names the pip command) and their ``NAME@stages`` variants."""

    def __post_init__(self) -> None:
        if not self.key or not callable(self.names) or not callable(self.create):
            raise ValueError(f"backbone provider {self.key!r} needs a key, names and create")


BACKBONE_PROVIDERS: dict[str, BackboneProvider] = {}


def register_backbones(provider: BackboneProvider) -> None:
    """Add ``provider``; a key registered twice or a second open-named provider is refused,
    since either would make the backbone a name builds depend on the registration order."""
    if provider.key in BACKBONE_PROVIDERS:
        raise ValueError(f"backbone provider {provider.key!r} is already registered")
    if provider.open_names and any(p.open_names for p in BACKBONE_PROVIDERS.values()):
        raise ValueError("only one backbone provider may build names it does not list")
    BACKBONE_PROVIDERS[provider.key] = provider


def _filterbank(name: str, *, device: str = "cpu", **opts: Any) -> Backbone:
    from workstation.experts.filterbank import FilterBankBackbone

    return FilterBankBackbone(device=device, **opts)


def _learned_names() -> tuple[str, ...]:
    from workstation.experts.backbones import BACKBONE_NAMES

    return BACKBONE_NAMES


def _learned(name: str, *, device: str = "cpu", **opts: Any) -> Backbone:
    from workstation.experts.backbones import create_backbone

    return create_backbone(name, device=device, **opts)


def installed_imagenet_backbones() -> tuple[str, ...]:
    """ImageNet CNN backbones whose pip package is installed (found without importing it)."""
    from workstation.pretrained.weights import packaged_file

    return tuple(
        entry.name
        for entry in CATALOG.values()
        if entry.family == "imagenet" and packaged_file(entry) is not None
    )


def _is_imagenet(name: str) -> bool:
    return name.partition(STAGE_SEPARATOR)[0] in catalog_names("imagenet")


def _imagenet(name: str, *, device: str = "cpu", **opts: Any) -> Backbone:
    from workstation.experts.imagenet_cnn import create_imagenet_backbone

    return create_imagenet_backbone(name, device=device, **opts)


register_backbones(BackboneProvider("filterbank", lambda: ("filterbank",), _filterbank))
register_backbones(
    BackboneProvider("imagenet", installed_imagenet_backbones, _imagenet, builds=_is_imagenet)
)
register_backbones(BackboneProvider("learned", _learned_names, _learned, open_names=True))


def available_backbones() -> tuple[str, ...]:
    """Every backbone name this installation knows (weights may still be missing)."""
    return tuple(name for provider in BACKBONE_PROVIDERS.values() for name in provider.names())


def _provider_for(name: str) -> BackboneProvider:
    """The provider listing ``name``, else the open-named one. An open-named provider's
    list is never read here, so building ``filterbank`` imports no learned backbone."""
    open_named = None
    for provider in BACKBONE_PROVIDERS.values():
        if provider.open_names:
            open_named = provider
        elif name in provider.names() or (provider.builds is not None and provider.builds(name)):
            return provider
    if open_named is None:
        offered = ", ".join(available_backbones())
        raise UserError(f"unknown backbone {name!r}; this installation offers: {offered}")
    return open_named


def build_backbone(name: str, *, device: str = "cpu", **opts: Any) -> Backbone:
    """Create the backbone called ``name`` on ``device``; unknown names are a UserError."""
    return _provider_for(name).create(name, device=device, **opts)
