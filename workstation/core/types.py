"""Domain values shared by every layer.

Records that come from the store are frozen: a change is a new revision, never an
in-place edit, which is what keeps feedback append-only and rounds reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

Split = Literal["train", "test", "unlabeled"]
"""train = normal references (MVTec train/good); test = evaluation; unlabeled = plain folder."""

MaskSource = Literal["ground_truth", "expert", "template", "vlm", "inspector"]
ReviewVerdict = Literal["accepted", "normal", "anomalous", "skipped"]
"""accepted = the model's verdict and mask are right; normal = false alarm / good part;
anomalous = defective (mask and text as corrected); skipped = looked at, no decision."""
ExplanationVerdict = Literal["normal", "anomalous"]
Severity = Literal["low", "medium", "high"]
ModelKind = str
"""``experts`` (fitted) or a registered trained kind; checked by ``core.kinds``."""
ModelState = Literal["active", "candidate", "rolled_back", "retired"]
RoundStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]

NORMAL_LABEL = "good"
"""Source label of a known-normal image (MVTec convention)."""

CALIBRATED_THRESHOLD = 1.0
"""Fused scores and maps are scaled so that the decision threshold is exactly this
(``experts/fusion.py``); so it is also the threshold of a product that stores none."""
CALIBRATED_NORMAL_LEVEL = 0.0
"""The calibrated score of a typical normal shot: fusion subtracts the median calibration
score, so this is where the heatmap's colour range starts (transparent)."""


def check_literal(value: str, allowed: object, what: str) -> str:
    """Validate ``value`` against a Literal alias; raise ValueError naming the choices."""
    choices = get_args(allowed)
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")
    return value


LEARNED_TYPES_SOURCE = "types"
"""Source of a draft whose type (and words) came from a trained defect-type head:
``types:<model version>``; explanations only, never masks."""
VERSIONED_SOURCES = ("vlm", LEARNED_TYPES_SOURCE)


def check_revision_source(source: str) -> str:
    """Revision sources are the MaskSource words, ``vlm:<model version>`` or
    ``types:<model version>``."""
    base = source.split(":", 1)[0]
    if base != LEARNED_TYPES_SOURCE:
        check_literal(base, MaskSource, "revision source")
    if ":" in source and base not in VERSIONED_SOURCES:
        raise ValueError(f"only vlm and types sources carry a version suffix; got {source!r}")
    if base == LEARNED_TYPES_SOURCE and ":" not in source:
        raise ValueError(f"a types source names its model version; got {source!r}")
    return source


@dataclass(frozen=True)
class Product:
    """A product type under inspection, with the context the experts and explainer use."""

    id: int
    name: str
    description: str = ""
    normality_rules: tuple[str, ...] = ()
    defect_vocabulary: tuple[str, ...] = ()
    threshold: float | None = None
    created_at: str = ""

    @property
    def decision_threshold(self) -> float:
        """The threshold its scores and maps are judged by: the stored one, or the
        calibrated level, so the queue and the explainer never disagree on a fallback."""
        return self.threshold if self.threshold is not None else CALIBRATED_THRESHOLD


@dataclass(frozen=True)
class ImageRecord:
    id: int
    product_id: int
    path: str
    sha256: str
    width: int
    height: int
    split: Split
    source_label: str | None
    """Ground-truth folder label at import: "good", a defect type, or None (unlabeled)."""
    imported_at: str = ""

    @property
    def name(self) -> str:
        return self.path.replace("\\", "/").rsplit("/", 1)[-1]

    @property
    def is_labeled_normal(self) -> bool:
        return self.source_label == NORMAL_LABEL


@dataclass(frozen=True)
class MaskRevision:
    id: int
    image_id: int
    blob: str
    """sha256 of the mask array blob (uint8 0/1, image size)."""
    source: str
    author: str
    created_at: str
    parent_id: int | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class Explanation:
    """The structured explanation every explainer produces and the inspector edits."""

    verdict: ExplanationVerdict
    defect_type: str = ""
    location: str = ""
    severity: Severity = "low"
    description: str = ""

    def __post_init__(self) -> None:
        check_literal(self.verdict, ExplanationVerdict, "verdict")
        check_literal(self.severity, Severity, "severity")

    def to_dict(self) -> dict[str, str]:
        return {
            "verdict": self.verdict,
            "defect_type": self.defect_type,
            "location": self.location,
            "severity": self.severity,
            "description": self.description,
        }


@dataclass(frozen=True)
class ExplanationRevision:
    id: int
    image_id: int
    explanation: Explanation
    source: str
    author: str
    created_at: str
    parent_id: int | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class Review:
    id: int
    image_id: int
    verdict: ReviewVerdict
    reason: str
    reviewer: str
    created_at: str
    model_version: str | None = None


@dataclass(frozen=True)
class Prediction:
    id: int
    image_id: int
    model_version: str
    score: float
    anomalous: bool
    map_blob: str | None
    created_at: str
    expert_scores: dict[str, float] = field(default_factory=dict)
    """Each expert's own image score (its units) behind the fused one; empty when unknown."""
    embedding: np.ndarray | None = field(default=None, compare=False)
    """The image in the experts' feature space (see ``AnomalyMap.embedding``), if known."""


@dataclass(frozen=True)
class ModelVersion:
    id: int
    product_id: int
    name: str
    """Human-readable unique tag, e.g. ``experts-1`` or ``adapter-3``."""
    kind: ModelKind
    state: ModelState
    parent_id: int | None
    round_id: int | None
    path: str | None
    """Folder holding the version's artefacts (calibration, adapter weights), inside the
    store's own models folder for every version registered with files."""
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, object] = field(default_factory=dict)
    created_at: str = ""
    files_sha256: str | None = None
    """Content hash of the folder when it was registered; loading checks it."""


@dataclass(frozen=True)
class Round:
    id: int
    product_id: int
    kind: ModelKind
    status: RoundStatus
    manifest_path: str
    started_at: str
    finished_at: str | None = None
    result_version_id: int | None = None
    message: str = ""


@dataclass
class AnomalyMap:
    """One output type for every expert: per-pixel map, image score, optional verdict.

    ``map`` is float32, image-sized (H, W); larger means more anomalous. Scores are in the
    expert's own units until fusion calibrates them (then 1.0 == threshold).
    """

    map: np.ndarray
    score: float
    threshold: float | None = None
    expert: str = ""
    embedding: np.ndarray | None = None
    """The whole image in the expert's feature space (experts that have one): what the
    review queue spreads its exploration over, so it is kept with the prediction."""

    def __post_init__(self) -> None:
        if self.map.ndim != 2:
            raise ValueError(f"anomaly map must be 2-D, got shape {self.map.shape}")

    @property
    def anomalous(self) -> bool | None:
        if self.threshold is None:
            return None
        return bool(self.score >= self.threshold)
