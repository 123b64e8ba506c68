"""Pose alignment: bring each image into the product's reference pose before the experts.

Parts shift and turn a little in the frame. Patch matching then compares a hole rim with
the bank's rims at slightly other angles, and a position-aware bank cannot be used at all,
so the outline and the bores light up on every normal image (the built-in demo's few-shot
maps did exactly that). Here every image is registered to one reference normal with
OpenCV's ECC (enhanced correlation coefficient) on a small, blurred gray copy: phase
correlation gives the starting shift, ECC refines a rigid (Euclidean) or similarity
transform. Maps are computed on the aligned image and warped back, so what the inspector
sees still sits on the original pixels.

A registration that fails or looks wrong (ECC did not converge, the match got worse than
no transform, a turn or shift larger than a part plausibly moves) falls back to no
alignment for that image, never to a wild warp.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from workstation.core.imageio import write_bytes_atomic
from workstation.experts.features import to_rgb_uint8

AlignMode = Literal["off", "rigid", "similarity"]
ESTIMATION_SIDE = 192
"""Longest side of the gray copies the transform is estimated on: pose is a coarse
property, and ECC on a small image takes a few milliseconds."""
MAX_TURN_DEGREES = 20.0
MAX_SHIFT = 0.25
"""Largest plausible shift, as a share of the image side."""
MAX_SCALE_CHANGE = 0.15
MIN_GAIN = 0.0
"""The aligned correlation must be at least this much better than with no transform."""


@dataclass(frozen=True)
class Alignment:
    """A 2x3 affine matrix taking original pixel coordinates to reference coordinates."""

    matrix: np.ndarray
    aligned: bool
    """False when registration fell back to no transform."""

    @classmethod
    def identity(cls) -> Alignment:
        return cls(np.eye(2, 3, dtype=np.float32), aligned=False)


def _gray_small(image: np.ndarray) -> tuple[np.ndarray, float]:
    rgb = to_rgb_uint8(image)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    scale = min(1.0, ESTIMATION_SIDE / max(gray.shape))
    if scale < 1.0:
        size = (max(8, round(gray.shape[1] * scale)), max(8, round(gray.shape[0] * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(gray, (0, 0), 1.0), scale


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


class Registrar:
    """Aligns images to one reference normal (see the module docstring)."""

    def __init__(self, mode: AlignMode = "rigid") -> None:
        self.mode = mode
        self.reference: np.ndarray | None = None
        self.reference_shape: tuple[int, int] | None = None

    def fit(self, normals: Sequence[np.ndarray]) -> None:
        """Pick the normal most like all the others (the medoid of small gray copies), so
        the reference pose is a typical one, not an outlier."""
        if self.mode == "off" or not normals:
            return
        smalls = [_gray_small(n)[0] for n in normals]
        shape = smalls[0].shape
        comparable = [i for i, s in enumerate(smalls) if s.shape == shape]
        if len(comparable) > 2:
            scores = [
                sum(_correlation(smalls[i], smalls[j]) for j in comparable if j != i)
                for i in comparable
            ]
            chosen = comparable[int(np.argmax(scores))]
        else:
            chosen = 0
        self.reference = smalls[chosen]
        self.reference_shape = normals[chosen].shape[:2]

    def save(self, path: Path) -> None:
        """The reference copy (nothing is written when alignment is off)."""
        if self.reference is None or self.reference_shape is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, reference=self.reference, shape=np.asarray(self.reference_shape))
        write_bytes_atomic(path, buffer.getvalue())

    def load(self, path: Path) -> None:
        if self.mode == "off" or not path.is_file():
            return
        with np.load(path) as data:
            self.reference = data["reference"].astype(np.float32)
            height, width = (int(v) for v in data["shape"])
            self.reference_shape = (height, width)

    def estimate(self, image: np.ndarray) -> Alignment:
        if self.mode == "off" or self.reference is None or self.reference_shape is None:
            return Alignment.identity()
        if image.shape[:2] != self.reference_shape:
            return Alignment.identity()  # another camera or crop: no common frame
        small, scale = _gray_small(image)
        # OpenCV's phase correlation and ECC write into their inputs: work on a copy, or
        # the stored reference drifts a little with every image registered.
        reference = self.reference.copy()
        if small.shape != reference.shape or float(small.std()) < 1e-3:
            return Alignment.identity()  # blank or constant image: nothing to align on
        window = cv2.createHanningWindow(small.shape[::-1], cv2.CV_32F)
        (dx, dy), _ = cv2.phaseCorrelate(reference, small, window)
        warp = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
        motion = cv2.MOTION_EUCLIDEAN if self.mode == "rigid" else cv2.MOTION_AFFINE
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5)
        try:
            _, warp = cv2.findTransformECC(reference, small, warp, motion, criteria, None, 3)
        except cv2.error:
            return Alignment.identity()
        if not self._plausible(warp, small.shape):
            return Alignment.identity()
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        moved = cv2.warpAffine(
            small, warp, small.shape[::-1], flags=flags, borderMode=cv2.BORDER_REFLECT
        )
        if _correlation(moved, reference) < _correlation(small, reference) + MIN_GAIN:
            return Alignment.identity()
        # ``warp`` maps reference coordinates to image coordinates at the small scale;
        # invert it and bring it to full-resolution pixels.
        to_reference = cv2.invertAffineTransform(warp)
        to_reference[:, 2] /= scale
        return Alignment(to_reference.astype(np.float32), aligned=True)

    def _plausible(self, warp: np.ndarray, shape: tuple[int, int]) -> bool:
        linear = warp[:, :2].astype(np.float64)
        if self.mode == "similarity":
            # Keep only rotation and a uniform scale of the affine estimate.
            scale = float(np.sqrt(abs(np.linalg.det(linear))))
            if abs(scale - 1.0) > MAX_SCALE_CHANGE:
                return False
            shear = np.linalg.norm(linear / scale - _rotation(linear))
            if shear > 0.05:
                return False
        turn = abs(np.degrees(np.arctan2(linear[1, 0], linear[0, 0])))
        shift = np.abs(warp[:, 2]) / np.array([shape[1], shape[0]])
        return turn <= MAX_TURN_DEGREES and bool((shift <= MAX_SHIFT).all())

    def align(self, image: np.ndarray, alignment: Alignment) -> np.ndarray:
        """The image in the reference pose (reflected at the borders it uncovers)."""
        return _warp(image, alignment, back=False)

    def unalign(self, heat: np.ndarray, alignment: Alignment) -> np.ndarray:
        """A map computed on the aligned image, back on the original image's pixels."""
        return _warp(heat, alignment, back=True)


def _warp(array: np.ndarray, alignment: Alignment, *, back: bool) -> np.ndarray:
    if not alignment.aligned:
        return array
    height, width = array.shape[:2]
    flags = cv2.INTER_LINEAR | (cv2.WARP_INVERSE_MAP if back else 0)
    border = cv2.BORDER_REPLICATE if back else cv2.BORDER_REFLECT
    return cv2.warpAffine(array, alignment.matrix, (width, height), flags=flags, borderMode=border)


def _rotation(linear: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(linear)
    return u @ vt
