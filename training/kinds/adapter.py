"""The segmentation adapter as a trained kind: a head on the few-shot backbone's features,
trained on the masks inspectors painted or accepted (``training.adapter_round``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.contract import NotEnoughFeedbackError, ParentModel, Sample
from workstation.core import strict
from workstation.core.errors import UserError

learns_from_all_normals = False
"""Trains on reviewed images only; its gate scores against the product's train/good."""


@dataclass(frozen=True)
class AdapterHyperparameters:
    """Defaults chosen so a round on ~100 masks trains in well under a minute on a CPU."""

    hidden: int = 64
    steps: int = 300
    batch_size: int = 8
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    focal_gamma: float = 2.0
    focal_alpha: float = 0.75
    dice_weight: float = 1.0
    detail: float = 2.0
    """The head's working side relative to the few-shot expert's, capped at the images' own
    size. Matching needs neighbourhood context and a bounded memory bank, so the few-shot
    expert works coarse; a per-patch head has neither limit, and pits a few pixels wide are
    only visible to it at a finer grid (bsdata, base 512 px: adapter alone image AUROC
    0.86 at 1x, 0.89 at native size; see docs/benchmarks.md)."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise UserError("adapter steps and batch_size must be at least 1")
        if self.hidden < 0:
            raise UserError("adapter hidden size must be >= 0 (0 = linear head)")
        if not 0 < self.detail <= 8:
            raise UserError("adapter detail must be in (0, 8] (1 = the experts' own size)")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AdapterHyperparameters:
        return strict.from_dict(cls, values, "adapter hyperparameter")


Hyperparameters = AdapterHyperparameters
"""The name the registry reads (``TrainedKind.hyperparameters``)."""


def check_feedback(train: Sequence[Sample]) -> None:
    """Both sides of the boundary: painted defect masks and normal images."""
    defects = sum(1 for s in train if s.label == "anomalous" and s.mask_path is not None)
    normals = sum(1 for s in train if s.label == "normal")
    if defects == 0:
        raise NotEnoughFeedbackError(
            f"no corrected defect masks to learn from yet ({normals} normal image(s) "
            "only); review some defective images and paint or accept their masks first"
        )
    if normals == 0:
        raise NotEnoughFeedbackError(
            f"only defective images ({defects}) in the feedback; mark some good parts "
            "as normal so the adapter sees both sides"
        )


def manifest_extras(
    parent: ParentModel | None, *, backbone: str, round_dir: Path
) -> dict[str, str]:
    """Continue from the active head when it was trained on the same backbone."""
    if parent is not None and parent.path and parent.backbone == backbone:
        return {"parent": str(parent.files())}
    return {}


def settings_defaults(settings: Any) -> tuple[str, dict[str, object]]:
    """The round's base model and hyperparameter defaults from the app's settings.

    Starts from the backbone's weights: no base model.
    """
    return "", {}

