"""The explainer's LoRA as a trained kind: peft LoRA on the VLM's language model, from the
explanations inspectors wrote or accepted (``training.vlm_lora``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.contract import NotEnoughFeedbackError, ParentModel, Sample
from workstation.core import strict
from workstation.core.errors import UserError

learns_from_all_normals = False


@dataclass(frozen=True)
class VlmHyperparameters:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    learning_rate: float = 2e-4
    steps: int = 60
    """Optimiser steps."""
    batch_size: int = 4
    """Examples per optimiser step, as micro-batches of one (gradient accumulation)."""
    grad_accumulation: int = 1
    model: str = ""
    """Catalogue name or folder of the base VLM (defaults to the manifest's base model)."""

    def __post_init__(self) -> None:
        if self.rank < 1 or self.steps < 1 or self.batch_size < 1 or self.grad_accumulation < 1:
            raise UserError("rank, steps, batch_size and grad_accumulation must be >= 1")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> VlmHyperparameters:
        return strict.from_dict(cls, values, "VLM hyperparameter")


Hyperparameters = VlmHyperparameters
"""The name the registry reads (``TrainedKind.hyperparameters``)."""


def check_feedback(train: Sequence[Sample]) -> None:
    """Reviewed explanations on both sides, so it does not learn to answer one way."""
    verdicts = {s.explanation.get("verdict") for s in train if s.explanation}
    if not verdicts:
        raise NotEnoughFeedbackError(
            "no reviewed explanations yet; accept or correct some explanations first"
        )
    if len(verdicts) < 2:
        raise NotEnoughFeedbackError(
            f"every reviewed explanation says {verdicts.pop()!r}; a VLM round needs both "
            "normal and anomalous examples so it does not learn to answer one way"
        )


def manifest_extras(
    parent: ParentModel | None, *, backbone: str, round_dir: Path
) -> dict[str, str]:
    """The round starts from the base model (``Hyperparameters.model``), never a parent."""
    return {}


def settings_defaults(settings: Any) -> tuple[str, dict[str, object]]:
    """The round's base model and hyperparameter defaults from the app's settings.

    The configured explainer VLM is both the base model and the default ``model``.
    """
    return settings.explainer.vlm, {"model": settings.explainer.vlm}

