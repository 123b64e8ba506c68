"""A synthetic inspection product: a brushed, machined metal plate under varying light.

Deterministic for a seed, offline, and fast (a default set writes in a few seconds). Each
image is a plate with a brushed grain, a machined bore and two drilled holes, seen with a
slight pose jitter, a lighting gradient, vignetting and sensor noise. Defect images add one
of scratch, pit, crack, stain or missing material; the defect is painted only inside its
mask, so the mask is exactly the set of changed pixels. A few defects are deliberately
subtle (low contrast), as on a real line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from workstation.core.imageio import encode_png, write_bytes_atomic

PRODUCT_NAME = "demo-metal-plate"
DEFECT_TYPES: tuple[str, ...] = ("scratch", "pit", "crack", "stain", "missing_material")
PRODUCT_INFO = {
    "name": PRODUCT_NAME,
    "description": (
        "Machined aluminium mounting plate with a brushed top face, a central bore and two "
        "drilled fixing holes, photographed from above under ring lighting."
    ),
    "normality_rules": [
        "The brushed grain runs left to right evenly over the whole face.",
        "Brightness may vary smoothly across the plate and darken towards the corners.",
        "The central bore and the two fixing holes are round with clean edges.",
        "Small shifts and rotations of the plate in the frame are normal.",
    ],
    "defect_vocabulary": list(DEFECT_TYPES),
}


@dataclass(frozen=True)
class DemoSpec:
    size: int = 256
    train_good: int = 40
    test_good: int = 20
    per_defect: int = 6
    seed: int = 7
    subtle_fraction: float = 0.25
    """Share of defect images drawn at low contrast."""


@dataclass(frozen=True)
class DemoSummary:
    root: Path
    """The category folder (MVTec layout) that was written."""
    counts: dict[str, int]


def _brushed_grain(rng: np.random.Generator, size: int) -> np.ndarray:
    """Streaks along x: white noise smeared by a long horizontal blur, plus fine speckle."""
    pad = size // 4
    noise = rng.standard_normal((size + 2 * pad, size + 2 * pad)).astype(np.float32)
    streaks = cv2.blur(noise, (max(9, size // 6), 1))
    streaks = cv2.GaussianBlur(streaks, (0, 0), sigmaX=0.6, sigmaY=0.8)
    streaks /= streaks.std() + 1e-6
    return streaks


def _render_plate(rng: np.random.Generator, spec: DemoSpec) -> tuple[np.ndarray, np.ndarray]:
    """One normal image (float32 gray in [0, 1]) and the plate face where defects may go."""
    s = spec.size
    grain = _brushed_grain(rng, s)
    angle = rng.uniform(-2.0, 2.0)
    shift = rng.uniform(-0.02, 0.02, size=2) * s
    center = (grain.shape[1] / 2, grain.shape[0] / 2)
    rotation = cv2.getRotationMatrix2D(center, angle, 1.0)
    rotation[:, 2] += shift - (grain.shape[0] - s) / 2
    grain = cv2.warpAffine(
        grain, rotation, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    base = 0.58 + 0.035 * grain

    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    plate = np.zeros((s, s), dtype=np.uint8)
    corners = np.array([[0.06, 0.06], [0.94, 0.06], [0.94, 0.94], [0.06, 0.94]]) * s
    pts = cv2.transform(corners[None].astype(np.float32), rotation[:, :2].astype(np.float32))[0]
    pts += shift + (s / 2 - rotation[:, :2] @ np.array([s / 2, s / 2]))
    cv2.fillConvexPoly(plate, np.rint(pts).astype(np.int32), 1)
    background = 0.12 + 0.02 * rng.standard_normal((s, s)).astype(np.float32)
    image = np.where(plate > 0, base, background).astype(np.float32)
    surface = plate.copy()

    cx, cy = s / 2 + shift[0], s / 2 + shift[1]
    holes = [(cx, cy, 0.13 * s)]
    for dx in (-0.3, 0.3):
        holes.append((cx + dx * s, cy - 0.3 * s, 0.045 * s))
    for hx, hy, radius in holes:
        dist = np.hypot(xx * s - hx, yy * s - hy)
        rim = np.clip(1.0 - np.abs(dist - radius * 1.08) / (0.05 * radius + 1.0), 0, 1)
        image = image + 0.18 * rim * (plate > 0)
        image = np.where(dist < radius, 0.08 + 0.05 * (dist / radius), image)
        surface[dist < radius * 1.2] = 0  # defects sit on the face, not in the holes

    gx, gy = rng.uniform(-0.12, 0.12, size=2)
    gain = rng.uniform(0.85, 1.12)
    light = gain * (1.0 + gx * (xx - 0.5) + gy * (yy - 0.5))
    vignette = 1.0 - rng.uniform(0.15, 0.3) * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2
    image = image * light * vignette
    image += rng.normal(0, rng.uniform(0.006, 0.014), size=(s, s)).astype(np.float32)
    return image.astype(np.float32), surface


def _scratch(
    rng: np.random.Generator, image: np.ndarray, plate: np.ndarray, strength: float
) -> np.ndarray:
    s = image.shape[0]
    mask = np.zeros_like(plate)
    start = rng.uniform(0.2, 0.8, size=2) * s
    direction = rng.uniform(0, np.pi)
    length = rng.uniform(0.2, 0.5) * s
    bend = rng.uniform(-0.15, 0.15)
    points = []
    for t in np.linspace(0, 1, 24):
        a = direction + bend * t
        points.append(start + t * length * np.array([np.cos(a), np.sin(a)]))
    cv2.polylines(mask, [np.rint(points).astype(np.int32)], False, 1, int(rng.integers(1, 3)))
    mask &= plate
    sign = 1 if rng.random() < 0.6 else -1
    image[mask > 0] += sign * strength * 0.22
    return mask


def _pit(
    rng: np.random.Generator, image: np.ndarray, plate: np.ndarray, strength: float
) -> np.ndarray:
    s = image.shape[0]
    mask = np.zeros_like(plate)
    for _ in range(int(rng.integers(1, 4))):
        c = rng.uniform(0.2, 0.8, size=2) * s
        r = rng.uniform(0.012, 0.03) * s
        cv2.circle(mask, tuple(int(v) for v in np.rint(c)), max(2, round(r)), 1, -1)
    mask &= plate
    yy, xx = np.nonzero(mask)
    image[yy, xx] -= strength * (0.25 + 0.08 * rng.standard_normal(yy.size))
    return mask


def _crack(
    rng: np.random.Generator, image: np.ndarray, plate: np.ndarray, strength: float
) -> np.ndarray:
    s = image.shape[0]
    mask = np.zeros_like(plate)
    point = rng.uniform(0.25, 0.75, size=2) * s
    heading = rng.uniform(0, 2 * np.pi)
    points = [point.copy()]
    for _ in range(int(rng.integers(18, 36))):
        heading += rng.normal(0, 0.5)
        point = point + rng.uniform(2, 5) * np.array([np.cos(heading), np.sin(heading)])
        points.append(point.copy())
    cv2.polylines(mask, [np.rint(points).astype(np.int32)], False, 1, 1)
    branch_from = points[len(points) // 2]
    branch = [branch_from, branch_from + rng.uniform(-12, 12, size=2)]
    cv2.polylines(mask, [np.rint(branch).astype(np.int32)], False, 1, 1)
    mask &= plate
    image[mask > 0] -= strength * 0.3
    return mask


def _stain(
    rng: np.random.Generator, image: np.ndarray, plate: np.ndarray, strength: float
) -> np.ndarray:
    s = image.shape[0]
    noise = cv2.GaussianBlur(rng.standard_normal((s, s)).astype(np.float32), (0, 0), s * 0.04)
    c = rng.uniform(0.25, 0.75, size=2) * s
    yy, xx = np.mgrid[0:s, 0:s]
    radius = rng.uniform(0.06, 0.13) * s
    blob = np.hypot(xx - c[0], yy - c[1]) / radius + noise / (noise.std() + 1e-6) * 0.35
    mask = ((blob < 1.0) & (plate > 0)).astype(np.uint8)
    depth = np.clip(1.0 - blob, 0, 1) ** 0.5
    image[mask > 0] -= strength * (0.05 + 0.12 * depth[mask > 0])
    return mask


def _missing_material(
    rng: np.random.Generator, image: np.ndarray, plate: np.ndarray, strength: float
) -> np.ndarray:
    """A chipped edge: part of the plate border is gone and the dark background shows."""
    s = image.shape[0]
    ys, xs = np.nonzero(plate)
    side = rng.integers(4)
    edge = [
        (xs.min(), ys.mean()),
        (xs.max(), ys.mean()),
        (xs.mean(), ys.min()),
        (xs.mean(), ys.max()),
    ][side]
    along = rng.uniform(-0.3, 0.3) * s
    center = np.array(edge) + (np.array([0, along]) if side < 2 else np.array([along, 0]))
    n = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.04, 0.09, n) * s
    polygon = center + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    mask = np.zeros_like(plate)
    cv2.fillPoly(mask, [np.rint(polygon).astype(np.int32)], 1)
    mask &= plate
    fill = 0.12 + 0.02 * rng.standard_normal(int(mask.sum()))
    image[mask > 0] = image[mask > 0] * (1 - strength) + fill * strength
    return mask


Painter = Callable[[np.random.Generator, np.ndarray, np.ndarray, float], np.ndarray]
_PAINTERS: dict[str, Painter] = {
    "scratch": _scratch,
    "pit": _pit,
    "crack": _crack,
    "stain": _stain,
    "missing_material": _missing_material,
}


def render_pair(
    rng: np.random.Generator, spec: DemoSpec, defect: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(the part without the defect, the part as imaged, exact uint8 0/1 mask or None)."""
    for _ in range(20):
        image, plate = _render_plate(rng, spec)
        tint = rng.uniform(0.97, 1.03, size=3)
        clean = _to_rgb(image, tint)
        if defect is None:
            return clean, clean, None
        subtle = rng.random() < spec.subtle_fraction
        strength = rng.uniform(0.35, 0.5) if subtle else rng.uniform(0.8, 1.2)
        if defect == "missing_material":
            strength = rng.uniform(0.6, 0.8) if subtle else 1.0
        painted = image.copy()
        mask = _PAINTERS[defect](rng, painted, plate, strength)
        after = _to_rgb(painted, tint)
        # The exact mask is what the defect changed after 8-bit rounding.
        exact = (mask.astype(bool) & np.any(after != clean, axis=2)).astype(np.uint8)
        if exact.sum() >= 6:
            return clean, after, exact
    raise RuntimeError(f"could not place a visible {defect} defect")


def render(
    rng: np.random.Generator, spec: DemoSpec, defect: str | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """One RGB uint8 image and, for a defect, its exact uint8 0/1 mask."""
    _, image, mask = render_pair(rng, spec, defect)
    return image, mask


def _to_rgb(gray: np.ndarray, tint: np.ndarray) -> np.ndarray:
    rgb = np.clip(gray[:, :, None] * tint[None, None, :], 0, 1)
    return np.rint(rgb * 255).astype(np.uint8)


def generate(
    out: Path | str, spec: DemoSpec = DemoSpec(), *, name: str = PRODUCT_NAME
) -> DemoSummary:
    """Write the demo product in MVTec layout under ``out/<name>``; same seed, same bytes."""
    root = Path(out) / name
    rng = np.random.default_rng(spec.seed)
    counts: dict[str, int] = {}
    jobs: list[tuple[str, str, int]] = [
        ("train", "good", spec.train_good),
        ("test", "good", spec.test_good),
    ]
    jobs += [("test", d, spec.per_defect) for d in DEFECT_TYPES]
    for split, label, count in jobs:
        for index in range(count):
            image, mask = render(rng, spec, None if label == "good" else label)
            stem = f"{index:03d}"
            write_bytes_atomic(root / split / label / f"{stem}.png", encode_png(image))
            if mask is not None:
                write_bytes_atomic(
                    root / "ground_truth" / label / f"{stem}_mask.png", encode_png(mask * 255)
                )
        counts[f"{split}/{label}"] = count
    info = dict(PRODUCT_INFO, name=name)
    write_bytes_atomic(root / "product.json", json.dumps(info, indent=2).encode("utf-8"))
    return DemoSummary(root=root, counts=counts)
