"""Calibration on normal shots, fusion of several experts, and the decision threshold.

Each expert speaks its own units (kNN distances, CLIP probabilities). On maps of normal
images that the expert did not memorise (leave-one-out for the few-shot bank), we learn
where "typical normal" (median pixel) and "as high as normal gets" (99th percentile pixel)
sit, and map every expert to ``(x - median) / (p99 - median)``. Pixel statistics are used
rather than image scores because even one normal image has thousands of pixels, so the
scale is stable with k = 1. The normalised experts are averaged (or max-ed); a learned
adapter, whose output is a defect probability, is added on top in the same "1 = as high
as normal gets" unit (see ``probability_scale`` for why its unit has a floor).

The threshold is an order statistic of the fused scores of the n calibration normals.
With threshold = the m-th smallest score, the false-positive rate on new normals,
``FPR = 1 - F(s_(m))``, follows Beta(n - m + 1, m), so
``P(FPR <= alpha) = P(Binomial(n, 1 - alpha) <= m - 1)``. We pick the conformal rank
``m = ceil((n + 1)(1 - alpha))`` (expected FPR <= alpha) when n allows it, else the
largest score, and always state the confidence reached and how many normals would give
90 % confidence. Calibrated scores are scaled so that the threshold is exactly 1.0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from workstation.core.errors import UserError
from workstation.core.types import CALIBRATED_THRESHOLD, AnomalyMap
from workstation.experts.image_head import ImageHead

FusionMode = Literal["mean", "max"]
CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = "iad-fusion-calibration/1"
CONFIDENCE_GOAL = 0.9
PROBABILITY_UNIT_FLOOR = 0.01
"""Smallest unit for a probability-valued expert: 1 % defect probability counts as much as
the most unusual normal texture of the base experts (see ``probability_scale``). Chosen on
the generated demo product (three seeds, 40 masks: fused image AUROC 0.76 at 0.1, 0.84 at
0.01; at 0.005 one seed's false alarms on normals the head never saw rose from 5 % to 15 %
at a threshold set on its training normals), then confirmed on bsdata (docs/benchmarks.md)."""


def _normal_pixels(normal_maps: Sequence[np.ndarray], *, who: str) -> np.ndarray:
    """Every pixel of an expert's maps on normal images, refused if any is not finite."""
    if not normal_maps:
        raise UserError("calibrating the fusion needs at least one normal image")
    values = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in normal_maps])
    if not np.isfinite(values).all():
        raise UserError(f"{who} produced NaN or infinite values on normal images")
    return values


def normal_quantile(normal_maps: Sequence[np.ndarray], quantile: float = 0.99) -> float:
    """The pixel value a map reaches on normal images: its ``quantile`` over all pixels."""
    return float(np.quantile(_normal_pixels(normal_maps, who="an expert"), quantile))


def probability_scale(normal_maps: Sequence[np.ndarray]) -> float:
    """Unit of a probability-valued expert (a learned adapter): its normal 99th percentile.

    Why normalise it at all: added raw, a probability (at most 1) was drowned by the base
    experts' normal-relative units, so a head that segments corrected defects well barely
    moved the fused map. Why a floor: a good head outputs ~0 on the normal shots it is
    calibrated on, and dividing by that would blow its noise up a thousandfold and make
    every faint guess outrank the base experts.
    """
    return max(normal_quantile(normal_maps), PROBABILITY_UNIT_FLOOR)


@dataclass(frozen=True)
class ExpertNorm:
    """Affine map of one expert's units to "normal-relative" units."""

    name: str
    location: float
    """Median pixel value on normal calibration maps."""
    spread: float
    """99th percentile minus median on those maps (> 0)."""
    additive: bool = False
    """True for probability outputs (learned adapters): scaled, then added, not averaged."""
    weight: float = 1.0
    """Share of this expert in the fusion, chosen per product on held-out evidence
    (``selection.py``); averaged experts form a weighted mean, additive ones are scaled."""

    def apply(self, values: np.ndarray | float) -> np.ndarray | float:
        if self.additive:
            # Probabilities keep 0 as "no defect"; the floor also guards older saved norms.
            return values / max(self.spread, PROBABILITY_UNIT_FLOOR)
        return (values - self.location) / self.spread


def fit_norm(
    name: str, maps: Sequence[np.ndarray], *, additive: bool = False, weight: float = 1.0
) -> ExpertNorm:
    if not maps:
        raise UserError(f"calibrating expert {name!r} needs at least one normal image")
    if weight <= 0:
        raise UserError(f"fusion weight of expert {name!r} must be more than 0")
    if additive:
        return ExpertNorm(
            name=name, location=0.0, spread=probability_scale(maps), additive=True, weight=weight
        )
    values = _normal_pixels(maps, who=f"expert {name!r}")
    location = float(np.median(values))
    spread = float(np.quantile(values, 0.99)) - location
    # A constant map (e.g. constant normal images) still needs a usable unit.
    spread = max(spread, 1e-6 * max(1.0, abs(location)))
    return ExpertNorm(name=name, location=location, spread=spread, weight=weight)


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), summed in log space so it is stable for large n."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(k + 1)
    ]
    top = max(log_terms)
    return float(min(1.0, math.exp(top) * sum(math.exp(t - top) for t in log_terms)))


def threshold_confidence(n: int, rank: int, target_fpr: float) -> float:
    """P(true FPR <= target) when the threshold is the ``rank``-th smallest of n normals."""
    return binomial_cdf(rank - 1, n, 1.0 - target_fpr)


def normals_for_confidence(target_fpr: float, goal: float = CONFIDENCE_GOAL) -> int:
    """Fewest normals for which the largest score is a threshold with P(FPR<=target)>=goal."""
    return math.ceil(math.log(1.0 - goal) / math.log(1.0 - target_fpr))


@dataclass(frozen=True)
class ThresholdChoice:
    raw: float
    """Threshold in fused (pre-scaling) units."""
    rank: int
    n: int
    target_fpr: float
    confidence: float
    expected_fpr: float
    """Mean FPR of an order-statistic threshold: (n - rank + 1) / (n + 1)."""
    normals_for_goal: int
    optimistic: bool = False
    """The calibration normals were training data of a learned expert (no others left)."""

    def statement(self) -> str:
        text = (
            f"threshold = {self.rank}-th smallest of {self.n} normal calibration scores; "
            f"expected false-positive rate {self.expected_fpr:.1%}; "
            f"P(false-positive rate <= {self.target_fpr:.1%}) = {self.confidence:.0%}"
        )
        if self.confidence < CONFIDENCE_GOAL:
            text += (
                f" (about {self.normals_for_goal} normals give "
                f"{CONFIDENCE_GOAL:.0%} confidence)"
            )
        if self.optimistic:
            text += (
                "; set on normals a trained expert learned from, so it may be too low: "
                "add normal images it did not train on"
            )
        return text


def choose_threshold(
    scores: Sequence[float], target_fpr: float, *, optimistic: bool = False
) -> ThresholdChoice:
    values = np.sort(np.asarray(scores, dtype=np.float64))
    n = values.size
    if n == 0:
        raise UserError("choosing a threshold needs at least one normal calibration score")
    if not 0 < target_fpr < 1:
        raise UserError("the target false-positive rate must be between 0 and 1")
    rank = min(n, math.ceil((n + 1) * (1.0 - target_fpr)))
    return ThresholdChoice(
        raw=float(values[rank - 1]),
        rank=rank,
        n=n,
        target_fpr=target_fpr,
        confidence=threshold_confidence(n, rank, target_fpr),
        expected_fpr=(n - rank + 1) / (n + 1),
        normals_for_goal=normals_for_confidence(target_fpr),
        optimistic=optimistic,
    )


@dataclass(frozen=True)
class Calibration:
    """Everything needed to turn expert outputs into calibrated, thresholded maps."""

    norms: tuple[ExpertNorm, ...]
    mode: FusionMode
    threshold: ThresholdChoice
    location: float
    """Median fused calibration score; calibrated = (fused - location) / (raw - location)."""
    calibration_scores: tuple[float, ...] = field(default=())
    head: ImageHead | None = None
    """Image score learned from confirmed defects (``image_head.py``); None: the experts'
    own scores, fused like the maps."""

    @property
    def unit(self) -> float:
        return max(self.threshold.raw - self.location, 1e-9)

    def fuse(self, outputs: dict[str, AnomalyMap]) -> AnomalyMap:
        """Fused, calibrated map: score 1.0 is the threshold, map in the same units."""
        missing = [n.name for n in self.norms if n.name not in outputs]
        if missing:
            raise UserError(f"calibration expects experts {missing} that did not run")
        base = [n for n in self.norms if not n.additive]
        extra = [n for n in self.norms if n.additive]
        heat, score = _combine(
            [(n.apply(outputs[n.name].map), n.apply(outputs[n.name].score)) for n in base],
            self.mode,
            [n.weight for n in base],
        )
        for norm in extra:
            heat = heat + norm.weight * norm.apply(outputs[norm.name].map)
            score = score + norm.weight * float(norm.apply(outputs[norm.name].score))
        if self.head is not None:
            score = self.head.score(np.asarray(heat))
        return AnomalyMap(
            map=np.asarray((heat - self.location) / self.unit, dtype=np.float32),
            score=float((score - self.location) / self.unit),
            threshold=CALIBRATED_THRESHOLD,
            expert="+".join(n.name for n in self.norms),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "format": CALIBRATION_FORMAT,
            "norms": [asdict(n) for n in self.norms],
            "mode": self.mode,
            "threshold": asdict(self.threshold),
            "location": self.location,
            "calibration_scores": list(self.calibration_scores),
            "statement": self.threshold.statement(),
            "head": None if self.head is None else self.head.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Calibration:
        if data.get("format") != CALIBRATION_FORMAT:
            raise UserError(
                f"calibration format {data.get('format')!r} is not {CALIBRATION_FORMAT!r}; "
                "re-run onboarding for this product"
            )
        return cls(
            norms=tuple(ExpertNorm(**n) for n in data["norms"]),  # type: ignore[union-attr]
            mode=data["mode"],  # type: ignore[arg-type]
            threshold=ThresholdChoice(**data["threshold"]),  # type: ignore[arg-type]
            location=float(data["location"]),  # type: ignore[arg-type]
            calibration_scores=tuple(data.get("calibration_scores", ())),  # type: ignore[arg-type]
            head=ImageHead.from_dict(data["head"]) if data.get("head") else None,  # type: ignore[arg-type]
        )

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CALIBRATION_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: Path) -> Calibration:
        path = folder / CALIBRATION_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"no calibration in {folder}; run onboarding first") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"calibration file {path} is damaged: {exc}") from exc
        return cls.from_dict(data)


def _combine(
    parts: list[tuple[np.ndarray | float, np.ndarray | float]],
    mode: FusionMode,
    weights: Sequence[float],
) -> tuple[np.ndarray | float, float]:
    if not parts:
        # Only probability-valued experts (a self-taught network on its own): they are
        # added onto an empty base.
        return 0.0, 0.0
    maps = np.stack([np.asarray(m, dtype=np.float32) for m, _ in parts])
    scores = np.asarray([float(s) for _, s in parts])
    if mode == "max":
        return maps.max(0), float(scores.max())
    share = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    if np.allclose(share, share[0]):
        return maps.mean(0), float(scores.mean())
    return np.tensordot(share.astype(np.float32), maps, axes=1), float(share @ scores)


def calibrate(
    calibration_outputs: Sequence[dict[str, AnomalyMap]],
    *,
    target_fpr: float,
    mode: FusionMode = "mean",
    additive: Sequence[str] = (),
    optimistic: bool = False,
    weights: Mapping[str, float] | None = None,
    head: ImageHead | None = None,
) -> Calibration:
    """Fit norms and threshold from per-normal outputs (``{expert name: map}`` each).

    The outputs must come from experts that did not see that normal during fitting
    (leave-one-out), otherwise the threshold is optimistic. ``weights`` (default 1 each)
    are the fusion shares chosen on held-out evidence.
    """
    if not calibration_outputs:
        raise UserError("calibration needs at least one normal image")
    names = list(calibration_outputs[0])
    weights = weights or {}
    norms = tuple(
        fit_norm(
            name,
            [out[name].map for out in calibration_outputs],
            additive=name in additive,
            weight=float(weights.get(name, 1.0)),
        )
        for name in names
    )
    provisional = Calibration(
        norms=norms,
        mode=mode,
        threshold=ThresholdChoice(1.0, 1, 1, target_fpr, 0.0, 1.0, 1),
        location=0.0,
        head=head,
    )
    fused = [provisional.fuse(out).score for out in calibration_outputs]
    threshold = choose_threshold(fused, target_fpr, optimistic=optimistic)
    location = float(np.median(fused))
    if threshold.raw - location <= 1e-9:
        # All normals score alike (few shots or constant images): use the pixel unit
        # (1 = the normal 99th percentile) as the distance from typical to threshold.
        location = threshold.raw - 1.0
    return Calibration(
        norms=norms,
        mode=mode,
        threshold=threshold,
        location=location,
        calibration_scores=tuple(float(s) for s in fused),
        head=head,
    )
