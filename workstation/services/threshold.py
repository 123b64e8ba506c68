"""A product's score distribution and its decision threshold, as an engineer tunes it.

Three groups of calibrated image scores answer "where should the line be?":

* normal shots: the onboarding normals, each scored leave-one-out at calibration (a shot
  scored by a bank that holds it says ~0 and would flatter any threshold);
* known normals: images reviewed normal (or accepted when the model said normal), and
  imported images labelled good outside the training split;
* known defects: images reviewed anomalous (or accepted when the model said anomalous),
  and imported images labelled with a defect.

:func:`counts_at` says what a threshold would do (flagged images, false alarms, missed
defects); :func:`set_threshold` stores the choice with its author (``store.thresholds``),
which the queue, the review window and the training gate then read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workstation.core.errors import UserError
from workstation.core.types import NORMAL_LABEL, Product
from workstation.store.repository import Store
from workstation.store.thresholds import ThresholdSetting

DEFECT_VERDICT = "anomalous"


@dataclass(frozen=True)
class ScoreGroups:
    normal_shots: tuple[float, ...]
    known_normals: tuple[float, ...]
    known_defects: tuple[float, ...]
    all_scores: tuple[float, ...]
    """Every scored image of the product (what "flagged" counts over)."""
    threshold: float
    calibrated_threshold: float | None
    """The experts version's own threshold in calibrated units (1.0), if one is active."""


@dataclass(frozen=True)
class ThresholdCounts:
    threshold: float
    flagged: int
    scored: int
    false_alarms: int
    known_normals: int
    missed: int
    known_defects: int

    def summary(self) -> str:
        return (
            f"at {self.threshold:.2f}: {self.flagged} of {self.scored} images flagged; "
            f"{self.false_alarms} of {self.known_normals} known normals flagged (false alarms); "
            f"{self.missed} of {self.known_defects} known defects missed"
        )


def normal_shot_scores(store: Store, product: Product) -> tuple[float, ...]:
    """Leave-one-out calibration scores of the active experts version, calibrated units."""
    from workstation.experts.fusion import Calibration

    version = store.active_model_version(product.id, "experts")
    if version is None or not version.path or not Path(version.path).is_dir():
        return ()
    try:
        calibration = Calibration.load(Path(version.path))
    except UserError:
        return ()
    raw = np.asarray(calibration.calibration_scores, dtype=np.float64)
    return tuple(float(v) for v in (raw - calibration.location) / calibration.unit)


def score_groups(store: Store, product: Product) -> ScoreGroups:
    """The product's scores in the three groups of the module docstring."""
    normals: list[float] = []
    defects: list[float] = []
    scores: list[float] = []
    for row in store.query_images(product.id, order_by="name"):
        if row.score is None:
            continue
        scores.append(row.score)
        verdict = row.review_verdict
        if verdict == "accepted":
            verdict = DEFECT_VERDICT if row.anomalous else "normal"
        label = row.image.source_label
        if verdict == "normal" or (
            verdict is None and label == NORMAL_LABEL and row.image.split != "train"
        ):
            normals.append(row.score)
        elif verdict == DEFECT_VERDICT or (verdict is None and label not in (None, NORMAL_LABEL)):
            defects.append(row.score)
    shots = normal_shot_scores(store, product)
    return ScoreGroups(
        normal_shots=shots,
        known_normals=tuple(normals),
        known_defects=tuple(defects),
        all_scores=tuple(scores),
        threshold=product.decision_threshold,
        calibrated_threshold=1.0 if shots else None,
    )


def counts_at(groups: ScoreGroups, threshold: float) -> ThresholdCounts:
    """What ``threshold`` flags: a score at or above it is anomalous."""

    def above(values: tuple[float, ...]) -> int:
        return int(np.count_nonzero(np.asarray(values, dtype=np.float64) >= threshold))

    return ThresholdCounts(
        threshold=threshold,
        flagged=above(groups.all_scores),
        scored=len(groups.all_scores),
        false_alarms=above(groups.known_normals),
        known_normals=len(groups.known_normals),
        missed=len(groups.known_defects) - above(groups.known_defects),
        known_defects=len(groups.known_defects),
    )


def set_threshold(
    store: Store, product: Product, threshold: float, *, author: str, reason: str = ""
) -> ThresholdSetting:
    """Store ``threshold`` as the product's decision threshold, with its author and the
    experts version it applies to."""
    version = store.active_model_version(product.id, "experts")
    return store.set_threshold(
        product.id,
        threshold,
        author=author,
        model_version=version.name if version else None,
        reason=reason,
    )
