"""Choosing a family, painting it, and labelling what visibly changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from workstation.core.errors import UserError
from workstation.experts.features import to_rgb_uint8
from workstation.experts.synthetic.families import PAINTERS

FAMILIES: tuple[str, ...] = tuple(PAINTERS)
ATTEMPTS = 4
"""Paint again this many times when a defect came out invisible (e.g. a patch that
matched its surroundings) before giving up and returning the normal image."""


OFF_BY_DEFAULT: frozenset[str] = frozenset({"stain"})
"""Families that teach the network to fire on normal variation. A soft, low-contrast
brightness or colour shift is what lighting and grease already do to normal parts: dropping
stains raised the self-taught image AUROC on both sets measured (bsdata 0.827 -> 0.892, the
demo 0.898 -> 0.977; docs/benchmarks.md). Products whose defects are stains can switch the
family back on with an explicit mix."""


def _default_weights() -> dict[str, float]:
    return {family: 0.0 if family in OFF_BY_DEFAULT else 1.0 for family in FAMILIES}


@dataclass(frozen=True)
class SynthesisMix:
    """Which families to draw and how often, and what counts as a visible change."""

    weights: Mapping[str, float] = field(default_factory=_default_weights)
    """Relative frequency of each family; 0 (or absent) switches a family off."""
    min_visible: float = 8.0
    """Gray levels (of 255) a pixel must change by, after a slight blur, to be labelled
    defective: the NSA rule that near-invisible blends are not taught as defects."""
    min_pixels: int = 4
    """Visible changes smaller than this many pixels are dropped (not a defect anyone sees)."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FAMILIES))
        if unknown:
            raise UserError(
                f"unknown synthetic defect families {unknown}; known: {', '.join(FAMILIES)}"
            )
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise UserError("synthetic family weights must be >= 0 and not all 0")
        if self.min_visible <= 0 or self.min_pixels < 1:
            raise UserError("min_visible must be > 0 and min_pixels >= 1")

    @classmethod
    def of(cls, families: Sequence[str]) -> SynthesisMix:
        """The named families, equally often (what ``--families`` asks for); none named:
        the default mix."""
        return cls(weights=dict.fromkeys(families, 1.0)) if families else cls()

    @classmethod
    def without(cls, *dropped: str) -> SynthesisMix:
        """The default mix without ``dropped`` (for ablations)."""
        unknown = sorted(set(dropped) - set(FAMILIES))
        if unknown:
            raise UserError(
                f"unknown synthetic defect families {unknown}; known: {', '.join(FAMILIES)}"
            )
        return cls(weights={f: (0.0 if f in dropped else w) for f, w in _default_weights().items()})

    def probabilities(self) -> tuple[tuple[str, ...], np.ndarray]:
        names = tuple(f for f in FAMILIES if self.weights.get(f, 0.0) > 0)
        weights = np.asarray([self.weights[f] for f in names], dtype=np.float64)
        return names, weights / weights.sum()


@dataclass(frozen=True)
class SyntheticDefect:
    image: np.ndarray
    """(H, W, 3) uint8 RGB with the defect painted in."""
    mask: np.ndarray
    """(H, W) uint8 0/1: the pixels that visibly changed (all 0 if nothing did)."""
    family: str


def visible_change(
    before: np.ndarray, after: np.ndarray, touched: np.ndarray, mix: SynthesisMix
) -> np.ndarray:
    """Pixels near the painted region whose colour changed by at least ``min_visible``."""
    difference = np.abs(after.astype(np.float32) - before.astype(np.float32)).max(axis=2)
    difference = cv2.GaussianBlur(difference, (0, 0), sigmaX=0.7)
    near = cv2.dilate((touched > 0.02).astype(np.uint8), np.ones((5, 5), np.uint8))
    mask = ((difference >= mix.min_visible) & (near > 0)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    small = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] < mix.min_pixels]
    if small:
        mask[np.isin(labels, small)] = 0
    return mask


class DefectSynthesizer:
    """Makes (defective image, exact mask) pairs from one product's normal images.

    ``donors`` are the product's normals (RGB uint8, any sizes) at the resolution the
    defects are painted at; patch and texture families take their material from them.
    """

    def __init__(self, donors: Sequence[np.ndarray], mix: SynthesisMix | None = None) -> None:
        if not donors:
            raise UserError("synthetic defects need at least one normal image of the product")
        self.donors = [to_rgb_uint8(d) for d in donors]
        self.mix = mix or SynthesisMix()
        self._names, self._probabilities = self.mix.probabilities()

    def make(
        self, image: np.ndarray, rng: np.random.Generator, *, family: str | None = None
    ) -> SyntheticDefect:
        """Paint one defect into ``image``; the mask is empty only if every attempt came
        out invisible, in which case the image is returned unchanged."""
        if family is not None and family not in PAINTERS:
            raise UserError(f"unknown synthetic defect family {family!r}")
        before = to_rgb_uint8(image)
        if min(before.shape[:2]) < 16:
            raise UserError("synthetic defects need images at least 16 pixels on each side")
        source = before.astype(np.float32)
        chosen = family or ""
        for _ in range(ATTEMPTS):
            chosen = family or str(rng.choice(self._names, p=self._probabilities))
            painted, touched = PAINTERS[chosen](rng, source, self.donors)
            after = np.clip(np.rint(painted), 0, 255).astype(np.uint8)
            mask = visible_change(before, after, touched, self.mix)
            if mask.any():
                # Pixels the painter changed but nobody would see are put back, so the
                # image and its label agree exactly.
                after = np.where(mask[..., None] > 0, after, before)
                return SyntheticDefect(image=after, mask=mask, family=chosen)
        return SyntheticDefect(
            image=before, mask=np.zeros(before.shape[:2], np.uint8), family=chosen
        )
