"""Writing a product's synthetic defects to disk, so a person can look at them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workstation.core.errors import UserError
from workstation.core.imageio import encode_png, read_image, write_bytes_atomic
from workstation.experts.features import resize_rgb, working_shape
from workstation.experts.selftaught import SIZE_MULTIPLE
from workstation.experts.synthetic import DefectSynthesizer, SynthesisMix
from workstation.services.onboard import normal_images
from workstation.store.repository import Store

MAX_DONORS = 64
"""Normals read as material for the painters: more adds variety slowly and costs memory."""


@dataclass(frozen=True)
class SynthesisSummary:
    root: Path
    counts: dict[str, int]


def write_synthetic_examples(
    store: Store,
    product_name: str,
    out: Path,
    *,
    count: int,
    families: Sequence[str] = (),
    image_size: int = 512,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SynthesisSummary:
    """Paint ``count`` defects into the product's normals (at the experts' working size)
    and write them under ``out/<product>/`` in MVTec layout."""
    product = store.get_product(product_name)
    records = normal_images(store, product)[:MAX_DONORS]
    if not records:
        raise UserError(
            f"product {product.name!r} has no normal images to paint defects into; import "
            "images labelled good first"
        )
    mix = SynthesisMix.of(families)  # refuses unknown names, listing the known ones
    shape = working_shape(
        [(r.height, r.width) for r in records], image_size=image_size, multiple=SIZE_MULTIPLE
    )
    normals = [resize_rgb(read_image(r.path), shape) for r in records]
    root = Path(out) / _folder_name(product.name)
    for index, image in enumerate(normals):
        write_bytes_atomic(root / "train" / "good" / f"{index:03d}.png", encode_png(image))
    synthesizer = DefectSynthesizer(normals, mix)
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for index in range(count):
        painted = synthesizer.make(normals[index % len(normals)], rng)
        family = painted.family if painted.mask.any() else "good"
        stem = f"{counts.get(family, 0):03d}"
        counts[family] = counts.get(family, 0) + 1
        write_bytes_atomic(root / "test" / family / f"{stem}.png", encode_png(painted.image))
        if painted.mask.any():
            mask_path = root / "ground_truth" / family / f"{stem}_mask.png"
            write_bytes_atomic(mask_path, encode_png(painted.mask * 255))
        if progress:
            progress(index + 1, count)
    return SynthesisSummary(root=root, counts=counts)


def _folder_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._")
    return cleaned or "product"
