"""The registry of trained model kinds: one registration per kind, read everywhere.

A *trained kind* is a model that a training round produces from a product's images and
reviews (the segmentation adapter, the self-taught network, the explainer's LoRA). Every
place that lists kinds or behaves differently per kind (the round runner, the feedback
check, the round manifest, the trained models that join the experts, the CLI's
``--kind`` choices, the GUI's train menu, the store's check of a version's kind) reads
this registry instead of spelling the names out, in the spirit of peft's
``PEFT_TYPE_TO_CONFIG_MAPPING`` and anomalib's model registry.

Only names and dotted paths live here (standard library only), so listing the kinds
imports neither torch nor the training code. What a kind does lives in its own module,
imported on first use:

- ``module`` (under ``training/kinds/``, torch-free at import) defines ``Hyperparameters``
  (a frozen dataclass whose ``from_dict`` is :func:`workstation.core.strict.from_dict`),
  ``learns_from_all_normals``, ``check_feedback(train)``, ``manifest_extras(parent, *,
  backbone, round_dir)`` and ``settings_defaults(settings)``.
- ``round`` (``"module:function"``, torch imported there) runs the round in the training
  child: ``run(manifest, out, *, device, emit)`` returns the metrics record.
- ``expert`` (optional, ``"module:function"`` under ``workstation/experts/``) attaches a
  trained folder to an inspection pipeline: ``attach(pipeline, folder)``. Kinds without
  one (the VLM) are used by something other than the experts.

How to add a kind: write its module under ``training/kinds/`` with the five names above
and its round function (and, if its model joins the experts, an ``attach`` function beside
the expert), then add one :func:`register` line at the bottom of this file. The CLI, the
GUI, the manifest, the round child and the store pick it up from here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

EXPERTS = "experts"
"""The fitted (not trained) model kind: the product's calibrated experts."""


class UnknownKindError(ValueError):
    """A kind name that no registration matches."""


@dataclass(frozen=True)
class TrainedKind:
    """One registration: what the kind is called, how it is shown, where its code lives."""

    name: str
    title: str
    """Short label for menus and tables."""
    help: str
    """One sentence for tooltips and ``--help``: what the round learns and from what."""
    module: str
    """Dotted path of the kind's torch-free module (hyperparameters, feedback, manifest)."""
    round: str
    """``"module:function"`` that runs a round of this kind in the training child."""
    expert: str | None = None
    """``"module:function"`` attaching a trained folder to an inspection pipeline."""

    def implementation(self) -> ModuleType:
        """The kind's module, imported on first use."""
        return importlib.import_module(self.module)

    def hyperparameters(self, values: Any = None) -> Any:
        """The kind's typed hyperparameters from a mapping (strict) or an instance."""
        cls = self.implementation().Hyperparameters
        if isinstance(values, cls):
            return values
        return cls.from_dict(dict(values or {}))

    def run_round(self) -> Callable[..., dict[str, object]]:
        """The round function, imported now (torch with it)."""
        return _load(self.round)

    def attach(self) -> Callable[[Any, Any], None] | None:
        """The function that adds this kind's trained model to a pipeline, or None."""
        return None if self.expert is None else _load(self.expert)


def _load(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


_REGISTRY: dict[str, TrainedKind] = {}


def register(kind: TrainedKind) -> TrainedKind:
    if kind.name in _REGISTRY or kind.name == EXPERTS:
        raise ValueError(f"model kind {kind.name!r} is registered twice")
    _REGISTRY[kind.name] = kind
    return kind


def names() -> tuple[str, ...]:
    """Every trained kind, in registration order (the order menus show them)."""
    return tuple(_REGISTRY)


def all_kinds() -> tuple[TrainedKind, ...]:
    return tuple(_REGISTRY.values())


def get(name: str) -> TrainedKind:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownKindError(
            f"unknown trained model kind {name!r}; known: {', '.join(_REGISTRY)}"
        ) from None


def experts() -> tuple[TrainedKind, ...]:
    """The trained kinds whose models join the inspection experts."""
    return tuple(k for k in _REGISTRY.values() if k.expert is not None)


def check_model_kind(value: str, what: str = "model kind") -> str:
    """A stored model version's kind: ``experts`` or a registered trained kind."""
    if value != EXPERTS and value not in _REGISTRY:
        raise ValueError(f"{what} must be one of {', '.join((EXPERTS, *_REGISTRY))}; got {value!r}")
    return value


# Registration order is the order menus list the kinds in and the experts attach in.
register(TrainedKind(
    name="adapter",
    title="Segmentation adapter",
    help="Train the segmentation adapter on the masks inspectors painted or accepted.",
    module="training.kinds.adapter",
    round="training.adapter_round:run_adapter_round",
    expert="workstation.experts.adapter:attach",
))
register(TrainedKind(
    name="selftaught",
    title="Self-taught expert",
    help="Teach the self-taught expert the product's normal look from its normal "
    "images and synthetic defects (no reviews needed; up to about 8 min on a CPU).",
    module="training.kinds.selftaught",
    round="training.selftaught_round:run_selftaught_round",
    expert="workstation.experts.selftaught:attach",
))
register(TrainedKind(
    name="vlm",
    title="Explainer (VLM LoRA)",
    help="Fine-tune the explainer (LoRA) on the explanations inspectors wrote or accepted.",
    module="training.kinds.vlm",
    round="training.vlm_lora:run_vlm_round",
))
register(TrainedKind(
    name="types",
    title="Defect types",
    help="Learn the plant's defect types and words from reviewed defects (seconds on a "
    "CPU); drafts then name the type, its confidence and the examples it resembles.",
    module="training.kinds.types",
    round="training.types_round:run_types_round",
))
