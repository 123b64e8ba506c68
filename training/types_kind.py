"""The ``types`` round kind's light parts: its hyperparameters and its feedback check.

No torch and no images, so the app checks a manifest and the CLI validates options
without importing the round's code. The round itself is ``training.types_round``; the
head it trains is ``workstation.experts.defect_types`` (numpy only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from training.contract import NotEnoughFeedbackError, Sample
from workstation.core.errors import UserError
from workstation.experts.defect_types import HeadSettings

KIND = "types"
INPUT_KEYS = frozenset({"regression_tolerance", "experts_path", "parent_types"})
"""Manifest entries the app adds beside the hyperparameters: the gate's tolerance, the
product's fitted experts (where region features come from) and the active head."""
HELP = (
    "types: learn the plant's defect types (and words) from reviewed defects; drafts then "
    "name the type with its confidence and the reviewed examples it resembles"
)


@dataclass(frozen=True)
class TypesHyperparameters(HeadSettings):
    """How a types round fits its head: the head's own settings, and one choice of the round."""

    refit_on_all: bool = True
    """After the gate has judged the train-side head, the saved head learns from every
    reviewed defect, held-out ones included: few-shot heads gain most from each example."""

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> TypesHyperparameters:
        """Strict: an unknown key is an error (a typo must not silently train defaults)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names - INPUT_KEYS)
        if unknown:
            raise UserError(
                f"unknown types hyperparameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(names))}"
            )
        chosen = {k: v for k, v in values.items() if k in names}
        try:
            return cls(**chosen)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise UserError(f"bad types hyperparameters: {exc}") from None

    def head_settings(self) -> HeadSettings:
        values = {f.name: getattr(self, f.name) for f in fields(HeadSettings)}
        return HeadSettings(**values)


def sample_type(sample: Sample) -> str:
    """The reviewed type of a defect sample ('' when none was given)."""
    return str((sample.explanation or {}).get("defect_type", "")).strip()


def check_types_feedback(train: Sequence[Sample]) -> None:
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
