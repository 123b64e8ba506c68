"""Random shapes for synthetic defects: fractal noise regions, blobs and curves.

All functions take a ``numpy.random.Generator`` and return float32 arrays in [0, 1] (soft
masks) so that the painters can blend with soft edges; nothing here knows about images.
"""

from __future__ import annotations

import cv2
import numpy as np


def perlin(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Gradient (Perlin) noise in about [-1, 1] with ``cells`` lattice cells per side."""
    height, width = shape
    cy, cx = max(1, cells[0]), max(1, cells[1])
    angles = rng.uniform(0, 2 * np.pi, size=(cy + 1, cx + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    ys = np.linspace(0, cy, height, endpoint=False)
    xs = np.linspace(0, cx, width, endpoint=False)
    yi, xi = ys.astype(int), xs.astype(int)
    fy, fx = (ys - yi)[:, None], (xs - xi)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        g = gradients[yi[:, None] + dy, xi[None, :] + dx]
        return g[..., 0] * (fx - dx) + g[..., 1] * (fy - dy)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (t * 6 - 15) + 10)

    uy, ux = fade(fy), fade(fx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return (np.sqrt(2.0) * (top * (1 - uy) + bottom * uy)).astype(np.float32)


def fractal_noise(
    rng: np.random.Generator, shape: tuple[int, int], *, scale: int, octaves: int = 3
) -> np.ndarray:
    """Sum of Perlin octaves; ``scale`` is the coarsest lattice's cell count per side."""
    total = np.zeros(shape, dtype=np.float32)
    amplitude, weight = 1.0, 0.0
    for octave in range(octaves):
        cells = scale * 2**octave
        total += amplitude * perlin(rng, shape, (cells, cells))
        weight += amplitude
        amplitude *= 0.5
    return total / weight


def noise_region(
    rng: np.random.Generator, shape: tuple[int, int], *, coverage: tuple[float, float]
) -> np.ndarray:
    """A DRAEM-style region: fractal noise thresholded so that it covers roughly a share
    of the area drawn from ``coverage``; returns a hard 0/1 float mask (may be empty)."""
    scale = int(rng.integers(1, 5))
    noise = fractal_noise(rng, shape, scale=scale, octaves=3)
    share = rng.uniform(*coverage)
    cut = float(np.quantile(noise, 1.0 - share))
    region = (noise > cut).astype(np.uint8)
    # Keep one connected piece, so a defect is one thing an inspector would circle.
    count, labels, _stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
    if count <= 1:
        return region.astype(np.float32)
    keep = 1 + int(rng.integers(count - 1))
    return (labels == keep).astype(np.float32)


def blob(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    center: tuple[float, float],
    radius: float,
    roughness: float = 0.35,
) -> np.ndarray:
    """An irregular filled ellipse (a pit, a stain): soft edge about one pixel wide."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    elong = rng.uniform(1.0, 2.0)
    dx, dy = xx - center[0], yy - center[1]
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / (radius * elong)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / radius
    distance = np.sqrt(u * u + v * v)
    cells = max(2, round(max(height, width) / max(radius, 1.0) / 1.5))
    wobble = perlin(rng, shape, (cells, cells)) * roughness
    edge = 1.0 + wobble - distance
    return np.clip(edge * radius + 0.5, 0.0, 1.0).astype(np.float32)


def curve_points(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    length: float,
    wiggle: float,
    step: float = 2.0,
) -> np.ndarray:
    """Points of a random walk with smoothly drifting heading (a scratch or a crack)."""
    height, width = shape
    point = rng.uniform([0.1 * width, 0.1 * height], [0.9 * width, 0.9 * height])
    heading = rng.uniform(0, 2 * np.pi)
    turn = 0.0
    points = [point.copy()]
    for _ in range(max(2, int(length / step))):
        turn = 0.7 * turn + rng.normal(0, wiggle)
        heading += turn
        point = point + step * np.array([np.cos(heading), np.sin(heading)])
        points.append(point.copy())
    return np.asarray(points, dtype=np.float32)


def draw_curve(shape: tuple[int, int], points: np.ndarray, *, thickness: int) -> np.ndarray:
    """Anti-aliased polyline as a soft float mask."""
    canvas = np.zeros(shape, dtype=np.uint8)
    shift = 4  # sub-pixel precision of the vertices
    vertices = np.rint(points * (1 << shift)).astype(np.int32)
    cv2.polylines(canvas, [vertices], False, 255, max(1, thickness), cv2.LINE_AA, shift)
    return canvas.astype(np.float32) / 255.0
