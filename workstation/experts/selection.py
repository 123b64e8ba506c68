"""Choosing each product's fusion from evidence the station computes itself, never labels
of the test images.

Why: no backbone and no fixed fusion wins on every product. On two real sets nobody here
had seen, a self-taught network added with a fixed weight cost up to 0.13 image AUROC, and
an ImageNet backbone that gained 0.24 image AUROC on one set lost 0.15 pixel AUROC on
another (tiny defects). So every product gets its own choice, made on:

* **normals held out of the fit** -- cross-fitting over the shots: the evidence normals are
  split into folds and each is scored against the few-shot bank less that fold's rows
  (``FewShotExpert.held_out_maps``); a trained member (self-taught network) only counts on
  normals it did not train on (``has_seen``);
* **synthetic defects of families no trained member learned** (``synthetic.evidence``:
  specks of a few pixels, dents, smears) pasted onto those held-out normals, exact masks;
* **every labelled anomaly the inspectors confirmed** (never counted for a trained member,
  which may have learned from it).

A candidate is a set of members with weights and a normalisation each; it is scored by
image AUROC and pixel AUROC on the evidence all its members may be judged on. The rule is
robust rather than greedy for the mean: a candidate that adds a member is accepted only if
it is not worse than each of its members alone on *either* metric and beats the simpler
candidate by more than the noise of the evidence; among alternatives (backbones) the
first listed within noise of the best wins (the caller lists them by preference: the
weight-free reference, then the backbone with the best worst case). Members are generic
(:class:`Member`), so new backbones and experts take part by being listed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from workstation.core import metrics
from workstation.core.errors import UserError
from workstation.experts.image_head import ImageHead, fit_head
from workstation.experts.synthetic.evidence import EVIDENCE_FAMILIES, paint_evidence

Normalisation = Literal["normal", "probability"]
WEIGHTS = (0.25, 0.5, 1.0, 2.0)
"""Shares tried for a member joining a candidate (relative to the members already in)."""
MAX_EVIDENCE_NORMALS = 16
FOLDS = 4
DEFECTS_GOAL = 32
"""About this many synthetic defects in all (at least 2, at most 8 per evidence normal)."""
PIXEL_NOISE = 0.005
PROBABILITY_FLOOR = 0.01


@dataclass(frozen=True)
class Evidence:
    """Evidence images (all at one shape), their masks and where each came from."""

    images: tuple[np.ndarray, ...]
    masks: tuple[np.ndarray | None, ...]
    """0/1 masks; None for a labelled anomaly without a mask (image metrics only)."""
    anomalous: np.ndarray
    source: tuple[int, ...]
    """Index of the evidence normal it was made from; -1 for a labelled anomaly."""
    family: tuple[str, ...]
    """``normal``, a synthetic family, or ``labelled``."""


def build_evidence(
    normals: Sequence[np.ndarray],
    sources: Sequence[int],
    *,
    labelled: Sequence[tuple[np.ndarray, np.ndarray | None]] = (),
    seed: int = 0,
) -> Evidence:
    """Each evidence normal, synthetic defects pasted on it, then the labelled anomalies.

    ``normals`` are the held-out normals (already at the evidence shape) and ``sources``
    their indices among the fitted shots. Families cycle so every family appears on
    several normals; the speck family keeps tiny defects visible to the pixel metric.
    """
    if not normals:
        raise UserError("the fusion evidence needs at least one held-out normal")
    rng = np.random.default_rng(seed)
    per_normal = min(8, max(2, math.ceil(DEFECTS_GOAL / len(normals))))
    images: list[np.ndarray] = []
    masks: list[np.ndarray | None] = []
    anomalous: list[bool] = []
    source: list[int] = []
    family: list[str] = []
    turn = 0
    for normal, shot in zip(normals, sources, strict=True):
        images.append(normal)
        masks.append(np.zeros(normal.shape[:2], np.uint8))
        anomalous.append(False)
        source.append(shot)
        family.append("normal")
        for _ in range(per_normal):
            name = EVIDENCE_FAMILIES[turn % len(EVIDENCE_FAMILIES)]
            turn += 1
            defect = paint_evidence(normal, name, rng)
            if defect is None:
                continue
            images.append(defect.image)
            masks.append(defect.mask)
            anomalous.append(True)
            source.append(shot)
            family.append(name)
    for image, mask in labelled:
        images.append(image)
        masks.append(None if mask is None else (np.asarray(mask) > 0).astype(np.uint8))
        anomalous.append(True)
        source.append(-1)
        family.append("labelled")
    return Evidence(
        tuple(images), tuple(masks), np.asarray(anomalous), tuple(source), tuple(family)
    )


@dataclass
class Member:
    """One expert's maps and scores on the evidence, and which rows may judge it."""

    name: str
    """Shown to users, e.g. ``fewshot(efficientnet-lite0)`` or ``selftaught``."""
    slot: str
    """The pipeline's expert name; a candidate holds at most one member per slot."""
    maps: list[np.ndarray]
    scores: np.ndarray
    usable: np.ndarray
    """Rows this member did not learn from (held-out normals, unseen defects)."""
    probability: bool = False
    """Outputs a defect probability (a trained network): may be added, not averaged."""
    option: str = ""
    """What distinguishes alternatives of one slot (the backbone)."""


@dataclass(frozen=True)
class Part:
    member: str
    weight: float
    norm: Normalisation


@dataclass(frozen=True)
class Scored:
    parts: tuple[Part, ...]
    image_auroc: float
    pixel_auroc: float
    rows: int
    normals: int

    @property
    def label(self) -> str:
        return " + ".join(
            (p.member if p.weight == 1.0 else f"{p.weight:g}x {p.member}")
            + (" (added)" if p.norm == "probability" else "")
            for p in self.parts
        )

    @property
    def objective(self) -> float:
        return 0.5 * (self.image_auroc + self.pixel_auroc)

    def noise(self) -> float:
        """Hanley-McNeil standard error of the image AUROC on these rows."""
        negatives, positives = self.normals, self.rows - self.normals
        return auroc_standard_error(self.image_auroc, positives, negatives)

    def metrics_text(self) -> str:
        return (
            f"image {self.image_auroc:.3f} / pixel {self.pixel_auroc:.3f} "
            f"on {self.normals} normals + {self.rows - self.normals} defects"
        )


def auroc_standard_error(auc: float, positives: int, negatives: int) -> float:
    if positives < 1 or negatives < 1 or not np.isfinite(auc):
        return 1.0
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return float(math.sqrt(max(variance, 0.0)))


@dataclass(frozen=True)
class FusionChoice:
    """What was tried, how each did, what was chosen and why (saved with the model)."""

    chosen: tuple[Part, ...]
    chosen_metrics: str
    reason: str
    left_out: dict[str, str] = field(default_factory=dict)
    candidates: tuple[dict[str, object], ...] = ()
    evidence: dict[str, int] = field(default_factory=dict)
    head: dict[str, object] | None = None
    """The image head learned from the confirmed defects (``image_head.py``), if any."""

    def options(self) -> dict[str, str]:
        """Slot -> option of the chosen members (the backbone of ``fewshot``)."""
        return {
            p.member.partition("(")[0]: p.member.partition("(")[2].rstrip(")") for p in self.chosen
        }

    def summary(self) -> str:
        text = "fusion: " + " + ".join(p.member for p in self.chosen)
        if self.head is not None:
            text += f"; image score learned from {self.head['labelled']} confirmed defects"
        if self.left_out:
            why = (f"{name} left out: {reason}" for name, reason in self.left_out.items())
            text += "; " + "; ".join(why)
        return text

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["summary"] = self.summary()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FusionChoice:
        return cls(
            chosen=tuple(Part(**p) for p in data["chosen"]),  # type: ignore[union-attr, arg-type]
            chosen_metrics=str(data.get("chosen_metrics", "")),
            reason=str(data.get("reason", "")),
            left_out=dict(data.get("left_out", {})),  # type: ignore[call-overload]
            candidates=tuple(data.get("candidates", ())),  # type: ignore[arg-type]
            evidence=dict(data.get("evidence", {})),  # type: ignore[call-overload]
            head=data.get("head"),  # type: ignore[arg-type]
        )


class Judge:
    """Scores candidates on the evidence; caches each member's normalised maps per row set."""

    def __init__(self, evidence: Evidence, members: Sequence[Member]) -> None:
        self.evidence = evidence
        self.members = {m.name: m for m in members}
        self.tried: dict[tuple[tuple[Part, ...], tuple[int, ...]], Scored] = {}
        self._quantiles: dict[tuple[str, tuple[int, ...]], tuple[float, float]] = {}

    def rows(self, names: Sequence[str]) -> np.ndarray:
        usable = np.ones(len(self.evidence.images), bool)
        for name in names:
            usable &= self.members[name].usable
        return np.flatnonzero(usable)

    def _normalised(self, member: Member, norm: Normalisation, rows: np.ndarray) -> Callable:
        normal_rows = tuple(int(i) for i in rows if not self.evidence.anomalous[i])
        key = (member.name, normal_rows)
        if key not in self._quantiles:
            pixels = np.concatenate([member.maps[i].ravel() for i in normal_rows])
            self._quantiles[key] = (
                float(np.median(pixels)),
                float(np.quantile(pixels, 0.99)),
            )
        location, high = self._quantiles[key]
        if norm == "probability":
            unit = max(high, PROBABILITY_FLOOR)
            return lambda values: values / unit
        spread = max(high - location, 1e-6 * max(1.0, abs(location)))
        return lambda values: (values - location) / spread

    def fused(
        self, parts: Sequence[Part], rows: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Fused maps and scores of ``rows`` as ``Calibration.fuse`` forms them before its
        final affine step: a weighted mean of the normal-unit parts, plus the weighted
        probability parts."""
        averaged = sum(p.weight for p in parts if p.norm == "normal") or 1.0
        maps = [np.zeros(self.evidence.images[i].shape[:2], np.float32) for i in rows]
        scores = np.zeros(len(rows))
        for part in parts:
            member = self.members[part.member]
            apply = self._normalised(member, part.norm, rows)
            share = part.weight / (averaged if part.norm == "normal" else 1.0)
            scores += share * apply(member.scores[rows])
            for slot, i in enumerate(rows):
                maps[slot] += share * apply(member.maps[i])
        return maps, scores

    def score(self, parts: Sequence[Part], rows: np.ndarray | None = None) -> Scored:
        names = [p.member for p in parts]
        rows = self.rows(names) if rows is None else rows
        key = (tuple(parts), tuple(int(i) for i in rows))
        if key in self.tried:
            return self.tried[key]
        labels = self.evidence.anomalous[rows]
        if labels.all() or not labels.any():
            raise UserError("the fusion evidence needs both normals and defects")
        fused_maps, fused_scores = self.fused(parts, rows)
        with_mask = [k for k, i in enumerate(rows) if self.evidence.masks[i] is not None]
        pixel = metrics.pixel_auroc(
            [fused_maps[k] for k in with_mask],
            [self.evidence.masks[rows[k]] for k in with_mask],  # type: ignore[misc]
        )
        scored = Scored(
            parts=tuple(parts),
            image_auroc=float(metrics.auroc(labels, fused_scores)),
            pixel_auroc=float(pixel),
            rows=len(rows),
            normals=int((~labels).sum()),
        )
        self.tried[key] = scored
        return scored


def choose_fusion(evidence: Evidence, members: Sequence[Member]) -> FusionChoice:
    """The robust choice described in the module docstring.

    Members are listed in order of preference: alternatives of the first member's slot
    compete for the base (the first listed within noise of the best wins), then each other
    slot's member is tried on top, with every weight and normalisation, on the rows all can
    be judged on.
    """
    if not members:
        raise UserError("choosing a fusion needs at least one member")
    judge = Judge(evidence, members)
    base_slot = members[0].slot
    alternatives = [m for m in members if m.slot == base_slot]
    singles = [judge.score([Part(m.name, 1.0, "normal")]) for m in alternatives]
    eligible = [s for s in singles if _not_worse(s, singles[0])]
    best = max(eligible, key=lambda s: s.objective)
    tolerance = best.noise()
    base = next(
        s
        for s in eligible
        if s.image_auroc >= best.image_auroc - tolerance
        and s.pixel_auroc >= best.pixel_auroc - PIXEL_NOISE
    )
    reason = f"{base.label}: {base.metrics_text()}"
    if len(singles) > 1:
        others = ", ".join(f"{s.label} {s.image_auroc:.3f}/{s.pixel_auroc:.3f}" for s in singles)
        reason += f" (alternatives image/pixel: {others})"
        if len(eligible) < len(singles):
            below = ", ".join(s.label for s in singles if s not in eligible)
            reason += f"; {below} below {singles[0].label} on one metric"
        if base is not best:
            reason += f"; first in order of preference within noise ({tolerance:.3f}) of the best"
    current = base.parts
    left_out: dict[str, str] = {}
    for member in members:
        if member.slot == base_slot:
            continue
        verdict = _try_member(judge, current, member)
        if isinstance(verdict, str):
            left_out[member.name] = verdict
        else:
            current = verdict.parts
            reason += f"; {member.name} joins: {verdict.metrics_text()}"
    final = judge.score(current)
    head = _learn_head(judge, current)
    return FusionChoice(
        head=None if head is None else head.to_dict(),
        chosen=current,
        chosen_metrics=final.metrics_text(),
        reason=reason,
        left_out=left_out,
        candidates=tuple(
            {
                "candidate": s.label,
                "image_auroc": round(s.image_auroc, 4),
                "pixel_auroc": round(s.pixel_auroc, 4),
                "normals": s.normals,
                "defects": s.rows - s.normals,
            }
            for s in judge.tried.values()
        ),
        evidence=_evidence_counts(evidence),
    )


def _not_worse(candidate: Scored, reference: Scored) -> bool:
    """An alternative may replace the reference (the first listed, weight-free backbone)
    only if it is not worse on *either* metric beyond noise: an ImageNet backbone that
    gains image AUROC can lose pixel AUROC on tiny defects, and the mean would hide it."""
    return (
        candidate.image_auroc >= reference.image_auroc - reference.noise()
        and candidate.pixel_auroc >= reference.pixel_auroc - PIXEL_NOISE
    )


def _try_member(judge: Judge, current: tuple[Part, ...], member: Member) -> Scored | str:
    """The best candidate adding ``member`` to ``current``, or why it was left out."""
    names = [p.member for p in current] + [member.name]
    rows = judge.rows(names)
    labels = judge.evidence.anomalous[rows]
    if labels.all() or not labels.any():
        return "no held-out evidence to judge it on (it trained on every normal)"
    before = judge.score(current, rows)
    alone = judge.score([Part(member.name, 1.0, "normal")], rows)
    norms: tuple[Normalisation, ...] = (
        ("probability", "normal") if member.probability else ("normal",)
    )
    tries = [
        judge.score([*current, Part(member.name, weight, norm)], rows)
        for norm in norms
        for weight in WEIGHTS
    ]
    floor_image = max(before.image_auroc, alone.image_auroc)
    floor_pixel = max(before.pixel_auroc, alone.pixel_auroc)
    safe = [t for t in tries if t.image_auroc >= floor_image and t.pixel_auroc >= floor_pixel]
    noise = before.noise()
    if not safe:
        top = max(tries, key=lambda t: t.objective)
        if top.image_auroc < floor_image:
            return (
                f"evidence image AUROC {top.image_auroc:.2f} with it < "
                f"{floor_image:.2f} without"
            )
        return f"evidence pixel AUROC {top.pixel_auroc:.2f} with it < {floor_pixel:.2f} without"
    top = max(safe, key=lambda t: t.objective)
    if top.objective - before.objective <= noise / 2:
        return (
            f"no gain beyond noise: image/pixel {top.image_auroc:.2f}/{top.pixel_auroc:.2f} "
            f"with it vs {before.image_auroc:.2f}/{before.pixel_auroc:.2f} without"
        )
    return top


def _learn_head(judge: Judge, parts: tuple[Part, ...]) -> ImageHead | None:
    """The image head, when inspectors confirmed defects: on the rows the chosen members
    may be judged on, plus every confirmed defect."""
    confirmed = np.asarray([f == "labelled" for f in judge.evidence.family])
    if not confirmed.any():
        return None
    rows = np.union1d(judge.rows([p.member for p in parts]), np.flatnonzero(confirmed))
    heats, _ = judge.fused(parts, rows)
    return fit_head(heats, judge.evidence.anomalous[rows].tolist(), confirmed[rows].tolist())


def _evidence_counts(evidence: Evidence) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in evidence.family:
        counts[name] = counts.get(name, 0) + 1
    return counts


def fold_of(position: int, count: int) -> int:
    """Cross-fitting fold of the ``position``-th of ``count`` evidence normals."""
    return position % min(FOLDS, count)
