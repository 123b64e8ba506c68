"""Manifest -> training data: image/mask pairs for the adapter, chat pairs for the VLM."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.contract import Sample
from workstation.core.errors import UserError
from workstation.core.imageio import read_image


@dataclass(frozen=True)
class MaskExample:
    image: np.ndarray
    """RGB uint8 at the image's own size."""
    mask: np.ndarray
    """uint8 0/1, same (H, W) as the image; all zero for a normal image."""
    sample: Sample


def load_sample_mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray:
    """The sample's mask; a normal image without one is all background."""
    if sample.mask_path is None:
        if sample.label == "anomalous":
            raise UserError(f"anomalous sample {sample.image_path} has no mask")
        return np.zeros(shape, dtype=np.uint8)
    mask = np.load(Path(sample.mask_path), allow_pickle=False)
    if mask.shape != shape:
        raise UserError(
            f"mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image "
            f"{sample.image_path} is {shape[1]}x{shape[0]}"
        )
    return (mask > 0).astype(np.uint8)


def mask_examples(samples: Sequence[Sample]) -> list[MaskExample]:
    """Samples usable by the adapter: normals and anomalies that carry a mask."""
    out = []
    for sample in samples:
        if sample.label == "anomalous" and sample.mask_path is None:
            continue
        image = read_image(sample.image_path)
        out.append(MaskExample(image, load_sample_mask(sample, image.shape[:2]), sample))
    return out
