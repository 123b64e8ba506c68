"""Weight-free patch features: a Gaussian-derivative pyramid pooled to a patch grid.

Why this design: industrial defects (scratches, pits, stains, missing material) change
local intensity, colour, edge direction or texture energy. A local jet (first and second
Gaussian derivatives) at several octaves measures exactly those, and pooling the signed
response and its magnitude over each patch describes both structure (which way an edge
runs) and texture (how much fine detail there is). Colour mean and contrast catch stains
and discolouration. A 3x3 neighbourhood average on the patch grid, as in PatchCore, gives
each patch context. Everything runs in OpenCV on the CPU, no weights needed. Features are
left in their natural units: the few-shot expert standardises them on the normal shots
(``feature_norm = "standardize"``), which is what makes the channels comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from workstation.core.errors import UserError

if TYPE_CHECKING:
    import torch

PATCH_STRIDE = 8
"""Input pixels per feature cell. Octave pooling factors are 8, 4, 2, 1."""


def _jet(level: np.ndarray) -> list[np.ndarray]:
    """First and second Gaussian derivatives (sigma 1 at this octave) of one channel."""
    smooth = cv2.GaussianBlur(level, (0, 0), sigmaX=1.0, sigmaY=1.0)
    return [
        cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8),
        cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8),
        cv2.Sobel(smooth, cv2.CV_32F, 2, 0, ksize=3, scale=1 / 4),
        cv2.Sobel(smooth, cv2.CV_32F, 1, 1, ksize=3, scale=1 / 4),
        cv2.Sobel(smooth, cv2.CV_32F, 0, 2, ksize=3, scale=1 / 4),
    ]


def _pool(channel: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Average over each patch cell (area interpolation is an exact box mean)."""
    height, width = grid
    if channel.shape == grid:
        return channel
    interpolation = cv2.INTER_AREA if channel.shape[0] > height else cv2.INTER_LINEAR
    return cv2.resize(channel, (width, height), interpolation=interpolation)


class FilterBankBackbone:
    """Multi-octave local jet + colour statistics, ``PATCH_STRIDE`` pixels per cell."""

    name = "filterbank"
    patch_stride = PATCH_STRIDE
    feature_norm = "standardize"
    """How the few-shot expert should normalise these features (see fewshot.py)."""
    size_multiple = PATCH_STRIDE * 2
    """Working sizes must divide into whole cells at every pooled octave."""

    def __init__(self, *, device: str = "cpu", octaves: int = 4, aggregate: int = 3) -> None:
        if octaves < 1 or aggregate < 1 or aggregate % 2 == 0:
            raise UserError("filterbank needs octaves >= 1 and an odd aggregate size >= 1")
        self.device = device
        self.octaves = octaves
        self.aggregate = aggregate

    @property
    def channels(self) -> int:
        return 4 + 10 * self.octaves + 2

    def _image_features(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if height < PATCH_STRIDE or width < PATCH_STRIDE:
            raise UserError(
                f"image {width}x{height} is smaller than one {PATCH_STRIDE}-pixel patch"
            )
        grid = (height // PATCH_STRIDE, width // PATCH_STRIDE)
        lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
        lightness = np.ascontiguousarray(lab[:, :, 0])
        out: list[np.ndarray] = []
        for index in range(3):
            out.append(_pool(np.ascontiguousarray(lab[:, :, index]), grid))
        mean_sq = _pool(lightness * lightness, grid)
        out.append(np.sqrt(np.maximum(mean_sq - out[0] * out[0], 0.0)))
        level = lightness
        for octave in range(self.octaves):
            if octave:
                level = cv2.pyrDown(level)
            for response in _jet(level):
                out.append(_pool(response, grid))
                out.append(_pool(np.abs(response), grid))
        # Coarse chroma context: colour of the surroundings (stains are judged against it).
        for index in (1, 2):
            coarse = cv2.GaussianBlur(out[index], (0, 0), sigmaX=2.0, sigmaY=2.0)
            out.append(out[index] - coarse)
        return np.stack(out, axis=0)

    def features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        if not images:
            raise UserError("no images given to the filterbank backbone")
        shapes = {image.shape[:2] for image in images}
        if len(shapes) != 1:
            raise UserError(f"one call needs images of one size, got {sorted(shapes)}")
        stacked = np.stack([self._image_features(image) for image in images], axis=0)
        tensor = torch.from_numpy(stacked).to(self.device)
        if self.aggregate > 1:
            pad = self.aggregate // 2
            tensor = F.pad(tensor, (pad, pad, pad, pad), mode="replicate")
            tensor = F.avg_pool2d(tensor, self.aggregate, stride=1)
        return tensor.contiguous()
