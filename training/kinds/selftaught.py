"""The self-taught network as a trained kind: it learns the product's normal look from its
normal images and synthetic defects, plus real masks when there are some
(``training.selftaught_round``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.contract import NotEnoughFeedbackError, ParentModel, Sample
from workstation.core import strict
from workstation.core.errors import UserError
from workstation.experts.synthetic import SynthesisMix

CHECKPOINT_DIR = "checkpoint"
"""Inside a round's folder: where the round keeps the checkpoint it resumes from."""
learns_from_all_normals = True
"""Every known-normal image of the product trains it, reviewed or not; its gate's memory
bank holds only the train side's normals."""


@dataclass(frozen=True)
class SelfTaughtHyperparameters:
    """Defaults sized so a round on ~45 normals ends within 10 minutes on 2 CPU cores."""

    steps: int = 4000
    budget_minutes: float = 8.0
    """Wall-clock cap on training; evaluation comes on top (well under a minute)."""
    batch_size: int = 16
    crop: int = 96
    width: int = 12
    encoder: str = "scratch"
    """``scratch`` or an ImageNet encoder whose weights a pip package ships
    (``workstation.experts.selftaught.ENCODERS``)."""
    pretrained_lr_scale: float = 0.1
    """Learning rate of ImageNet weights relative to the fresh layers: the usual
    fine-tuning ratio, so the first steps, driven by a random decoder, do not wash out
    what the encoder already knows."""
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    defect_probability: float = 0.5
    real_defect_share: float = 0.3
    """Of the defective crops, this share comes from inspector masks when there are some."""
    lighting_jitter: float = 0.1
    """Global gain (+-) and offset (+-25x this, gray levels) applied to every crop: lighting
    that changes over a shift is normal, so the network must not learn it as a defect."""
    families: dict[str, float] = field(default_factory=dict)
    """Relative frequency per synthetic family (empty: the default mix, which leaves stains
    out)."""
    min_visible: float = 8.0
    calibration_fraction: float = 0.25
    """Normals kept out of training so the fusion can measure the network's unit on
    images it never saw (see ``InspectionPipeline.fit``)."""
    focal_gamma: float = 2.0
    focal_alpha: float = 0.75
    dice_weight: float = 1.0
    checkpoint_every_s: float = 30.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.crop < 32 or self.width < 1:
            raise UserError("self-taught steps, batch_size, width >= 1 and crop >= 32")
        if self.budget_minutes <= 0:
            raise UserError("the self-taught time budget must be more than 0 minutes")
        if not 0 <= self.defect_probability <= 1 or not 0 <= self.calibration_fraction < 1:
            raise UserError("defect_probability in [0, 1] and calibration_fraction in [0, 1)")
        if self.encoder != "scratch":
            # The list lives beside the network (torch); the default needs no import.
            from workstation.experts.selftaught import ENCODERS

            if self.encoder not in ENCODERS:
                raise UserError(f"self-taught encoder must be one of {', '.join(ENCODERS)}")
        if self.pretrained_lr_scale < 0:
            raise UserError("pretrained_lr_scale must be >= 0")
        self.mix()  # validates the family names now, not at the first step

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SelfTaughtHyperparameters:
        return strict.from_dict(cls, values, "self-taught hyperparameter")

    def mix(self) -> SynthesisMix:
        if self.families:
            return SynthesisMix(weights=dict(self.families), min_visible=self.min_visible)
        return SynthesisMix(min_visible=self.min_visible)


Hyperparameters = SelfTaughtHyperparameters
"""The name the registry reads (``TrainedKind.hyperparameters``)."""


def check_feedback(train: Sequence[Sample]) -> None:
    """Normal images are all it needs."""
    if not any(s.label == "normal" for s in train):
        raise NotEnoughFeedbackError(
            "the self-taught expert learns from normal images and the product has none; "
            "import images labelled good (train/good) or review some as normal"
        )


def manifest_extras(
    parent: ParentModel | None, *, backbone: str, round_dir: Path
) -> dict[str, str]:
    """Continue from the active network when its folder is there; checkpoint as it trains
    so a killed round resumes (``train --resume``)."""
    extras = {"checkpoint_dir": str(round_dir / CHECKPOINT_DIR)}
    if parent is not None and parent.path and Path(parent.path).is_dir():
        extras["parent"] = str(parent.files())
    return extras


def settings_defaults(settings: Any) -> tuple[str, dict[str, object]]:
    """The round's base model and hyperparameter defaults from the app's settings.

    Starts from scratch or its encoder's weights: no base model.
    """
    return "", {}

