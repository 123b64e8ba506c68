"""The defect families: each paints one kind of defect into a float RGB image.

A painter takes the image (float32, 0-255, H x W x 3, changed in place is not allowed:
it returns a new array), the product's other normal images (``donors``) and a random
generator, and returns the painted image plus the soft region it touched. Sizes are in
pixels of the experts' working resolution, so a synthetic pit is as large as a real pit
looks to the network, whatever crop it is painted on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from workstation.experts.synthetic.shapes import (
    blob,
    curve_points,
    draw_curve,
    fractal_noise,
    noise_region,
)

Painter = Callable[
    [np.random.Generator, np.ndarray, Sequence[np.ndarray]], tuple[np.ndarray, np.ndarray]
]


def _donor_crop(
    rng: np.random.Generator, donors: Sequence[np.ndarray], shape: tuple[int, int]
) -> np.ndarray:
    """A random window of a random normal image, tiled up when the donor is smaller."""
    donor = donors[int(rng.integers(len(donors)))]
    height, width = shape
    reps = (-(-height // donor.shape[0]), -(-width // donor.shape[1]), 1)
    if reps[0] > 1 or reps[1] > 1:
        donor = np.tile(donor, reps)
    y = int(rng.integers(donor.shape[0] - height + 1))
    x = int(rng.integers(donor.shape[1] - width + 1))
    return donor[y : y + height, x : x + width].astype(np.float32)


def patch_blend(
    rng: np.random.Generator, image: np.ndarray, donors: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """NSA: a scaled, rotated patch of another normal, Poisson-blended into this one.

    Seamless cloning matches the patch's boundary to its new surroundings, so the network
    cannot find it by a seam; it has to notice that the content does not belong there.
    """
    height, width = image.shape[:2]
    ph = int(min(height - 4, rng.integers(8, 49)))
    pw = int(min(width - 4, rng.integers(8, 49)))
    if ph < 6 or pw < 6:
        return image.copy(), np.zeros((height, width), np.float32)
    scale = rng.uniform(0.75, 1.33)
    angle = rng.uniform(-180, 180) if rng.random() < 0.5 else rng.uniform(-20, 20)
    side = int(np.ceil(np.hypot(ph, pw) * scale)) + 2
    source = _donor_crop(rng, donors, (side, side))
    rotation = cv2.getRotationMatrix2D((side / 2, side / 2), angle, scale)
    rotation[:, 2] += (pw / 2 - side / 2, ph / 2 - side / 2)
    patch = cv2.warpAffine(source, rotation, (pw, ph), borderMode=cv2.BORDER_REFLECT)
    patch = np.clip(patch * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
    shape_mask = np.zeros((ph, pw), np.uint8)
    if rng.random() < 0.5:
        cv2.ellipse(shape_mask, (pw // 2, ph // 2), (pw // 2 - 1, ph // 2 - 1), 0, 0, 360, 255, -1)
    else:
        shape_mask[1:-1, 1:-1] = 255
    cy = int(rng.integers(ph // 2 + 1, height - ph // 2 - 1))
    cx = int(rng.integers(pw // 2 + 1, width - pw // 2 - 1))
    flag = cv2.NORMAL_CLONE if rng.random() < 0.7 else cv2.MIXED_CLONE
    target = np.clip(image, 0, 255).astype(np.uint8)
    blended = cv2.seamlessClone(patch, target, shape_mask, (cx, cy), flag)
    touched = np.zeros((height, width), np.float32)
    y0, x0 = cy - ph // 2, cx - pw // 2
    touched[y0 : y0 + ph, x0 : x0 + pw] = shape_mask / 255.0
    return blended.astype(np.float32), touched


def _procedural_texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A foreign texture made from noise, stripes or a checkerboard (gray, 0-1)."""
    height, width = shape
    kind = int(rng.integers(3))
    if kind == 0:
        texture = fractal_noise(rng, shape, scale=int(rng.integers(2, 9)), octaves=4)
    elif kind == 1:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(3, 16)
        phase = xx * np.cos(angle) + yy * np.sin(angle)
        texture = np.sin(2 * np.pi * phase / period)
    else:
        cell = int(rng.integers(2, 9))
        yy, xx = np.mgrid[0:height, 0:width]
        texture = (((yy // cell) + (xx // cell)) % 2).astype(np.float32) * 2 - 1
    texture = (texture - texture.min()) / max(float(np.ptp(texture)), 1e-6)
    return texture.astype(np.float32)


def _transformed_texture(
    rng: np.random.Generator, shape: tuple[int, int], donors: Sequence[np.ndarray]
) -> np.ndarray:
    """The product's own texture, turned, flipped and recoloured so it no longer fits."""
    height, width = shape
    side = max(height, width)
    texture = _donor_crop(rng, donors, (side, side))
    texture = np.rot90(texture, int(rng.integers(1, 4)))
    if rng.random() < 0.5:
        texture = texture[:, ::-1]
    texture = np.ascontiguousarray(texture[:height, :width]) / 255.0
    operation = int(rng.integers(4))
    if operation == 0:
        texture = texture ** rng.uniform(0.4, 2.5)
    elif operation == 1:
        texture = 1.0 - texture
    elif operation == 2:
        mean = texture.mean()
        texture = np.clip((texture - mean) * rng.uniform(1.5, 3.0) + mean, 0, 1)
    else:
        texture = texture * rng.uniform(0.6, 1.4, size=3)
    return np.clip(texture, 0, 1).astype(np.float32)


def foreign_texture(
    rng: np.random.Generator, image: np.ndarray, donors: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """DRAEM: a fractal-noise region filled, partly transparent, with a foreign texture
    (the product's own, transformed, or a procedural one; no external dataset)."""
    height, width = image.shape[:2]
    region = noise_region(rng, (height, width), coverage=(0.005, 0.08))
    if rng.random() < 0.5:
        fill = _transformed_texture(rng, (height, width), donors) * 255.0
    else:
        gray = _procedural_texture(rng, (height, width))
        low, high = np.quantile(image, [0.02, 0.98])
        span = max(float(high - low), 40.0)
        tint = rng.uniform(0.8, 1.2, size=3)
        fill = (low + gray[..., None] * span) * tint
    opacity = rng.uniform(0.4, 1.0)
    alpha = (region * opacity)[..., None]
    return image * (1 - alpha) + fill * alpha, region


def scratch(
    rng: np.random.Generator, image: np.ndarray, donors: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """A thin scratch (smooth curve) or crack (jagged, sometimes branching), lighter or
    darker than the surface, its depth varying along its length."""
    del donors
    shape = image.shape[:2]
    if rng.random() < 0.6:
        points = curve_points(rng, shape, length=rng.uniform(10, 120), wiggle=0.03)
        thickness = int(rng.integers(1, 4))
    else:
        points = curve_points(rng, shape, length=rng.uniform(10, 80), wiggle=0.35)
        thickness = int(rng.integers(1, 3))
    soft = draw_curve(shape, points, thickness=thickness)
    if rng.random() < 0.4:
        start = points[len(points) // 2]
        branch = curve_points(rng, shape, length=rng.uniform(5, 30), wiggle=0.35)
        branch = branch - branch[0] + start
        soft = np.maximum(soft, draw_curve(shape, branch, thickness=1))
    depth = 0.6 + 0.4 * (fractal_noise(rng, shape, scale=2, octaves=1) + 1) / 2
    sign = 1.0 if rng.random() < 0.5 else -1.0
    delta = sign * rng.uniform(15, 80) * soft * depth
    return image + delta[..., None], soft


def pit(
    rng: np.random.Generator, image: np.ndarray, donors: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """One to four small irregular cavities: dark, rough inside, sometimes a bright rim."""
    del donors
    height, width = image.shape[:2]
    touched = np.zeros((height, width), np.float32)
    out = image.copy()
    anchor = rng.uniform([0, 0], [width, height])
    for _ in range(int(rng.integers(1, 5))):
        center = np.clip(anchor + rng.normal(0, 10, size=2), 0, [width - 1, height - 1])
        radius = rng.uniform(1.0, 7.0)
        soft = blob(rng, (height, width), center=(center[0], center[1]), radius=radius)
        grain = 1 + 0.25 * rng.standard_normal((height, width)).astype(np.float32)
        darkness = np.clip(rng.uniform(0.3, 0.8) * grain, 0, 0.95)
        out = out * (1 - (soft * darkness)[..., None])
        if rng.random() < 0.3:
            ring = cv2.dilate(soft, np.ones((3, 3), np.uint8)) - soft
            out = out + (ring * rng.uniform(15, 50))[..., None]
            soft = np.maximum(soft, ring)
        touched = np.maximum(touched, soft)
    return out, touched


def stain(
    rng: np.random.Generator, image: np.ndarray, donors: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """A low-contrast brightness or colour shift with soft edges (oil, residue, heat)."""
    del donors
    height, width = image.shape[:2]
    radius = rng.uniform(5, 40)
    center = rng.uniform([0, 0], [width, height])
    soft = blob(rng, (height, width), center=(center[0], center[1]), radius=radius, roughness=0.5)
    soft = cv2.GaussianBlur(soft, (0, 0), sigmaX=max(0.5, radius * 0.25))
    gain = rng.uniform(0.75, 0.93) if rng.random() < 0.6 else rng.uniform(1.07, 1.25)
    tint = rng.uniform(-15, 15, size=3)
    shifted = image * gain + tint
    alpha = soft[..., None]
    return image * (1 - alpha) + shifted * alpha, soft


def missing_material(
    rng: np.random.Generator, image: np.ndarray, donors: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """A region whose surface is gone: smoothed over (worn, filled) or dark (a hole, a
    chipped edge that shows the background)."""
    del donors
    height, width = image.shape[:2]
    radius = rng.uniform(4, 30)
    if rng.random() < 0.4:
        # Chipped edge: centred on a border of the crop, so part of the outline is gone.
        side = int(rng.integers(4))
        along = rng.uniform(0, width if side < 2 else height)
        center = [(along, 0.0), (along, height - 1.0), (0.0, along), (width - 1.0, along)][side]
    else:
        center = tuple(rng.uniform([0, 0], [width, height]))
    soft = blob(rng, (height, width), center=center, radius=radius, roughness=0.4)
    region = (soft > 0.5).astype(np.uint8)
    if region.sum() == 0:
        return image.copy(), soft
    if rng.random() < 0.5:
        source = np.clip(image, 0, 255).astype(np.uint8)
        grown = cv2.dilate(region, np.ones((3, 3), np.uint8))
        filled = cv2.inpaint(source, grown * 255, 3, cv2.INPAINT_TELEA).astype(np.float32)
    else:
        floor = np.quantile(image, rng.uniform(0.0, 0.03), axis=(0, 1))
        noise = rng.normal(0, 3, size=image.shape).astype(np.float32)
        filled = np.clip(floor * rng.uniform(0.5, 1.0) + noise, 0, 255)
    alpha = soft[..., None]
    return image * (1 - alpha) + filled * alpha, soft


PAINTERS: dict[str, Painter] = {
    "patch_blend": patch_blend,
    "foreign_texture": foreign_texture,
    "scratch": scratch,
    "pit": pit,
    "stain": stain,
    "missing_material": missing_material,
}
