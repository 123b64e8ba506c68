"""Held-out synthetic defects: families no trained expert ever learned from.

The fusion choice (``workstation.experts.selection``) needs defects with exact masks to
see whether an expert, or a mix of experts, finds defects on this product. Judging a
self-taught network on the families it was trained on would flatter it: it learned those
shapes, not the product's normal look. These families are therefore kept apart from
:data:`~workstation.experts.synthetic.families.PAINTERS` (a test checks the names are
disjoint), so no training round can draw them.

They cover what the training families do not: specks a few pixels wide (so a backbone that
blurs tiny defects away shows it at pixel level), dents (shading without a change of
material) and smears (elongated, soft-edged residue).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from workstation.core.errors import UserError
from workstation.experts.features import to_rgb_uint8
from workstation.experts.synthetic.families import Painter
from workstation.experts.synthetic.shapes import blob, curve_points, draw_curve
from workstation.experts.synthetic.synthesizer import SynthesisMix, visible_change


def speck(
    rng: np.random.Generator, image: np.ndarray, donors: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """One tiny, sharp, dark or bright spot, 1 to 3 pixels in radius."""
    del donors
    height, width = image.shape[:2]
    center = (float(rng.uniform(2, width - 2)), float(rng.uniform(2, height - 2)))
    soft = blob(rng, (height, width), center=center, radius=rng.uniform(1.0, 3.0), roughness=0.2)
    sign = 1.0 if rng.random() < 0.4 else -1.0
    return image + (sign * rng.uniform(40, 110) * soft)[..., None], soft


def dent(
    rng: np.random.Generator, image: np.ndarray, donors: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """A shallow dent lit from one side: a bright and a dark half, no change of material."""
    del donors
    height, width = image.shape[:2]
    radius = rng.uniform(6, 28)
    center = (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
    soft = blob(rng, (height, width), center=center, radius=radius, roughness=0.2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    slope = ((xx - center[0]) * np.cos(angle) + (yy - center[1]) * np.sin(angle)) / radius
    shading = np.clip(slope, -1, 1) * soft * rng.uniform(25, 70)
    return image + shading[..., None], soft


def smear(
    rng: np.random.Generator, image: np.ndarray, donors: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """An elongated, soft-edged streak of residue, darker or lighter than the surface."""
    del donors
    shape = image.shape[:2]
    points = curve_points(rng, shape, length=rng.uniform(20, 90), wiggle=0.05)
    width = float(rng.uniform(3, 9))
    soft = draw_curve(shape, points, thickness=round(width))
    soft = cv2.GaussianBlur(soft, (0, 0), sigmaX=width / 3)
    soft = np.clip(soft / max(float(soft.max()), 1e-6), 0, 1).astype(np.float32)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return image + (sign * rng.uniform(30, 70) * soft)[..., None], soft


EVIDENCE_PAINTERS: dict[str, Painter] = {"speck": speck, "dent": dent, "smear": smear}
EVIDENCE_FAMILIES: tuple[str, ...] = tuple(EVIDENCE_PAINTERS)


@dataclass(frozen=True)
class EvidenceDefect:
    image: np.ndarray
    """(H, W, 3) uint8 RGB with the defect painted in."""
    mask: np.ndarray
    """(H, W) uint8 0/1: exactly the pixels that visibly changed."""
    family: str


ATTEMPTS = 6
"""Paint again this many times when a defect came out invisible (a speck on a speck)."""


def paint_evidence(
    image: np.ndarray, family: str, rng: np.random.Generator
) -> EvidenceDefect | None:
    """One ``family`` defect on ``image`` with its exact mask; None if none came out visible."""
    if family not in EVIDENCE_PAINTERS:
        known = ", ".join(EVIDENCE_FAMILIES)
        raise UserError(f"unknown evidence family {family!r}; known: {known}")
    before = to_rgb_uint8(image)
    if min(before.shape[:2]) < 16:
        raise UserError("synthetic evidence needs images at least 16 pixels on each side")
    rule = SynthesisMix(min_pixels=2)
    for _ in range(ATTEMPTS):
        painted, touched = EVIDENCE_PAINTERS[family](rng, before.astype(np.float32), ())
        after = np.clip(np.rint(painted), 0, 255).astype(np.uint8)
        mask = visible_change(before, after, touched, rule)
        if mask.any():
            after = np.where(mask[..., None] > 0, after, before)
            return EvidenceDefect(image=after, mask=mask, family=family)
    return None
