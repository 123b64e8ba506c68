"""A small store with reviewed feedback on synthetic parts, shared by the round tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from synthetic_parts import textured, with_defect

from workstation.core.imageio import write_png
from workstation.core.types import Product
from workstation.store.repository import Store

PRODUCT = "plate"


def _add(store: Store, product: Product, path: Path, image: np.ndarray, **kw: object) -> int:
    write_png(path, image)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    record, _ = store.add_image(
        product.id,
        path=str(path),
        sha256=sha,
        width=image.shape[1],
        height=image.shape[0],
        **kw,  # type: ignore[arg-type]
    )
    return record.id


def add_feedback(
    store: Store, root: Path, *, normals: int, defects: int, first_seed: int = 200
) -> None:
    """Reviewed normals and inspector-masked defects (new images from ``first_seed`` on)."""
    product = store.get_product(PRODUCT)
    for i in range(normals):
        seed = first_seed + i
        image_id = _add(
            store,
            product,
            root / "img" / f"n{seed}.png",
            textured(seed),
            split="test",
            source_label=None,
        )
        store.add_review(image_id, "normal", reviewer="ann")
    for i in range(defects):
        seed = first_seed + 100 + i
        image, mask = with_defect(seed)
        image_id = _add(
            store, product, root / "img" / f"d{seed}.png", image, split="test", source_label=None
        )
        store.add_mask_revision(image_id, mask, source="inspector", author="ann")
        store.add_review(image_id, "anomalous", reviewer="ann")


def feedback_store(root: Path, *, normals: int = 4, defects: int = 4, references: int = 3) -> Store:
    """References in train/good; ``normals`` reviewed normal; ``defects`` with inspector masks."""
    store = Store.open(root / "store" / "ws.sqlite")
    product = store.create_product(PRODUCT, description="striped plate")
    for i in range(references):
        _add(
            store,
            product,
            root / "img" / f"ref{i}.png",
            textured(100 + i),
            split="train",
            source_label="good",
        )
    add_feedback(store, root, normals=normals, defects=defects)
    return store
