"""The product's confirmed defects, as evidence for the fusion choice at onboarding.

Every anomaly an inspector confirmed (reviewed anomalous, or accepted where the model said
anomalous) is the best evidence the station has of what this product's defects look like;
the fit scores every candidate fusion on them (``workstation.experts.selection``). The mask
is the newest revision when one marks any pixel, else None (image metrics only).
"""

from __future__ import annotations

import numpy as np

from workstation.core.imageio import read_image
from workstation.core.types import Product
from workstation.store.repository import Store

MAX_CONFIRMED = 32
"""Most confirmed defects read per fit (newest reviews are not preferred: by name)."""


def confirmed_anomalies(
    store: Store, product: Product, *, max_side: int, limit: int = MAX_CONFIRMED
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(image, mask or None) of up to ``limit`` confirmed defects of ``product``."""
    found: list[tuple[np.ndarray, np.ndarray | None]] = []
    for row in store.query_images(product.id, review_state="reviewed", order_by="name"):
        if len(found) >= limit:
            break
        review = store.latest_review(row.image.id)
        if review is None:
            continue
        confirmed = review.verdict == "anomalous" or (
            review.verdict == "accepted" and bool(row.anomalous)
        )
        if not confirmed:
            continue
        image = read_image(row.image.path, max_side=max_side)
        revision = store.latest_mask_revision(row.image.id)
        mask = store.load_mask(revision) if revision is not None else None
        if mask is not None and (not mask.any() or mask.shape != image.shape[:2]):
            mask = _resized(mask, image.shape[:2]) if mask.any() else None
        found.append((image, mask))
    return found


def _resized(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import cv2

    small = (mask > 0).astype(np.uint8)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
