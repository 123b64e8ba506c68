"""Values the store hands out or takes in batches, beyond the domain types in ``core.types``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from typing import Any, Literal, TypeVar

import numpy as np

from workstation.core.types import ImageRecord, Split

ReviewState = Literal["unreviewed", "reviewed"]
ImageOrder = Literal["priority", "score", "name"]
_Record = TypeVar("_Record")


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def from_row(cls: type[_Record], row: Mapping[str, Any], **values: Any) -> _Record:
    """The dataclass ``cls`` from a table row holding a column named after each field.

    ``values`` gives the fields whose column needs decoding (JSON text, 0/1, bytes) or
    that no single column holds; every other field takes its column as it is, so a field
    added to a type and its table needs no converter of its own.
    """
    return cls(
        **{name: values[name] if name in values else row[name] for name in _field_names(cls)}
    )


@dataclass(frozen=True)
class ImageFilter:
    """Which of a product's images the queue shows; None means "do not filter on this".

    ``reviewed`` means at least one decisive review; scores, verdicts and defect types are
    the newest prediction's; ``conflict`` keeps (True) or drops (False) the images whose
    stations' verdicts disagree. The one spelling of these keywords: ``query_images`` and
    ``count_images`` take it (or the same names as keywords), the GUI's ``QueueFilter``
    builds one.
    """

    review_state: ReviewState | None = None
    predicted_anomalous: bool | None = None
    score_min: float | None = None
    score_max: float | None = None
    defect_type: str | None = None
    conflict: bool | None = None


@dataclass(frozen=True)
class ImageRow:
    """One line of the review queue: the image and the newest facts about it."""

    image: ImageRecord
    score: float | None
    anomalous: bool | None
    review_verdict: str | None
    defect_type: str | None
    """Defect type of the newest explanation (None when there is none or it says normal)."""
    priority: float | None
    priority_reason: str | None = None
    """Why the review queue put the image where it is (e.g. "experts disagree")."""
    conflict: bool = False
    """Stations' verdicts on this image disagree and no inspector has decided since
    (``store.current``); the newest verdict is shown meanwhile."""


@dataclass(frozen=True)
class NewImage:
    """An image to add in a batch, optionally with its ground-truth mask (uint8 0/1)."""

    path: str
    sha256: str
    width: int
    height: int
    split: Split
    source_label: str | None
    ground_truth_mask: np.ndarray | None = None


@dataclass(frozen=True)
class NewPrediction:
    image_id: int
    model_version: str
    score: float
    anomalous: bool
    anomaly_map: np.ndarray | None = None
    expert_scores: Mapping[str, float] | None = None
    """Each expert's own image score behind the fused one (for the review queue)."""
    embedding: np.ndarray | None = None
    """1-D image embedding (``AnomalyMap.embedding``), kept as float16."""


@dataclass(frozen=True)
class NewMaskRevision:
    """A mask to append (any nonzero pixel is defect; the mask must be image-sized)."""

    image_id: int
    mask: np.ndarray
    source: str
    author: str
    parent_id: int | None = None
    model_version: str | None = None
