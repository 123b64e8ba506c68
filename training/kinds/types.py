"""The defect-type head as a trained kind (issue 22): it learns the plant's defect types
and words from reviewed defects (``training.types_round``; the head is
``workstation.experts.defect_types``, numpy only).

Its manifest is built by ``workstation.services.defect_types`` (its own samples: the
final mask, the reviewed type, the inspector's words, the stored map; a per-type held-out
share), so ``learns_from_all_normals`` and the generic feedback collection do not apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from training.contract import NotEnoughFeedbackError, ParentModel, Sample
from workstation.core import strict
from workstation.experts.defect_types import HeadSettings

learns_from_all_normals = False


@dataclass(frozen=True)
class TypesHyperparameters(HeadSettings):
    """How a types round fits its head: the head's own settings, and one choice of the round."""

    refit_on_all: bool = True
    """After the gate has judged the train-side head, the saved head learns from every
    reviewed defect, held-out ones included: few-shot heads gain most from each example."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TypesHyperparameters:
        from workstation.core.errors import UserError

        try:
            return strict.from_dict(cls, values, "types hyperparameter")
        except (TypeError, ValueError) as exc:
            raise UserError(f"bad types hyperparameters: {exc}") from None

    def head_settings(self) -> HeadSettings:
        values = {f.name: getattr(self, f.name) for f in fields(HeadSettings)}
        return HeadSettings(**values)


Hyperparameters = TypesHyperparameters
"""The name the registry reads (``TrainedKind.hyperparameters``)."""


def sample_type(sample: Sample) -> str:
    """The reviewed type of a defect sample ('' when none was given)."""
    return str((sample.explanation or {}).get("defect_type", "")).strip()


def check_feedback(train: Sequence[Sample]) -> None:
    """A types round needs reviewed defects with a mask and at least two named types."""
    usable = [
        s for s in train if s.label == "anomalous" and s.mask_path is not None and sample_type(s)
    ]
    types = sorted({sample_type(s) for s in usable})
    if not usable:
        raise NotEnoughFeedbackError(
            "no reviewed defects with a mask and a defect type yet; review some defective "
            "images and set their defect type"
        )
    if len(types) < 2:
        raise NotEnoughFeedbackError(
            f"every reviewed defect ({len(usable)}) is a {types[0]!r}; a type head needs at "
            "least two defect types to tell apart"
        )


def manifest_extras(
    parent: ParentModel | None, *, backbone: str, round_dir: Path
) -> dict[str, str]:
    """The active head (its exemplars judge the "before" side), on any backbone: a head
    trained on another one is set aside by the round itself."""
    if parent is not None and parent.path:
        return {"parent": str(parent.files())}
    return {}


def settings_defaults(settings: Any) -> tuple[str, dict[str, object]]:
    """No base model; the head's own defaults."""
    return "", {}
