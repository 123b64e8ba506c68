"""Held-out metrics before and after a round, and the promotion gate.

The held-out side always holds every earlier inspector correction (the golden set). A new
version is promoted only if no golden metric drops by more than the tolerance: a round
that re-breaks a case an inspector already fixed stays a candidate, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from workstation.core.metrics import auroc, pixel_auroc

GOLDEN_PREFIX = "golden_"
HELD_OUT_PREFIX = "held_out_"


@dataclass(frozen=True)
class ScoredSample:
    """One held-out image as a version sees it: its map and score, and the truth."""

    anomaly_map: np.ndarray
    score: float
    anomalous: bool
    mask: np.ndarray | None
    golden: bool


def _metrics(samples: Sequence[ScoredSample], prefix: str) -> dict[str, float]:
    """Image AUROC and pixel AUROC where defined (both classes present), else left out."""
    out: dict[str, float] = {}
    labels = [s.anomalous for s in samples]
    if len(set(labels)) == 2:
        out[prefix + "image_auroc"] = auroc(np.array(labels), np.array([s.score for s in samples]))
    with_masks = [s for s in samples if s.mask is not None]
    if any(s.mask.any() for s in with_masks if s.mask is not None) and any(
        not s.mask.all() for s in with_masks if s.mask is not None
    ):
        out[prefix + "pixel_auroc"] = pixel_auroc(
            [s.anomaly_map for s in with_masks], [s.mask for s in with_masks if s.mask is not None]
        )
    out[prefix + "count"] = float(len(samples))
    return out


def held_out_metrics(samples: Sequence[ScoredSample]) -> dict[str, float]:
    """Metrics on the whole held-out side and on its golden part."""
    metrics = _metrics(samples, HELD_OUT_PREFIX)
    golden = [s for s in samples if s.golden]
    if golden:
        metrics |= _metrics(golden, GOLDEN_PREFIX)
    return metrics


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    regressions: tuple[str, ...] = ()


def gate(
    before: Mapping[str, float], after: Mapping[str, float], *, tolerance: float
) -> GateDecision:
    """Promote unless a golden metric (or, with no golden set, a held-out one) regresses.

    Only quality metrics present on both sides are compared; counts are not quality.
    """
    prefix = GOLDEN_PREFIX if any(k.startswith(GOLDEN_PREFIX) for k in after) else HELD_OUT_PREFIX
    compared = sorted(
        k
        for k in after
        if k.startswith(prefix)
        and not k.endswith("count")
        and k in before
        and math.isfinite(before[k])
        and math.isfinite(after[k])
    )
    if not compared:
        return GateDecision(False, "no held-out metric to compare; kept as a candidate")
    regressions = tuple(
        f"{k}: {before[k]:.3f} -> {after[k]:.3f}"
        for k in compared
        if after[k] < before[k] - tolerance
    )
    if regressions:
        where = "golden set" if prefix == GOLDEN_PREFIX else "held-out set"
        return GateDecision(
            False,
            f"regressed on the {where} beyond tolerance {tolerance:g}: " + "; ".join(regressions),
            regressions,
        )
    gains = ", ".join(f"{k} {before[k]:.3f} -> {after[k]:.3f}" for k in compared)
    return GateDecision(True, f"no regression ({gains})")


DEFAULT_REGRESSION_TOLERANCE = 0.01


def gated_result(
    before: Mapping[str, float],
    after: Mapping[str, float],
    tolerance: float = DEFAULT_REGRESSION_TOLERANCE,
) -> dict[str, object]:
    """The metrics file's common part for every round kind: both sides and the verdict."""
    decision = gate(before, after, tolerance=tolerance)
    return {
        "before": dict(before),
        "after": dict(after),
        "promote": decision.promote,
        "reason": decision.reason,
    }
