"""Stations for the sync tests: stores with one shared product, images and feedback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workstation.core.imageio import write_png
from workstation.core.types import Explanation
from workstation.store.exchange import TABLES
from workstation.store.repository import Store
from workstation.store.rows import NewImage

PRODUCT = "ball-screw"
SIZE = (24, 32)


def write_image(folder: Path, seed: int) -> tuple[Path, str]:
    """A tiny distinct PNG; returns its path and sha256 (of the file)."""
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    path = folder / f"part_{seed:04d}.png"
    write_png(path, pixels)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def add_images(store: Store, folder: Path, seeds: list[int]) -> list[int]:
    product = store.find_product(PRODUCT) or store.create_product(
        PRODUCT, description="a ground ball screw", defect_vocabulary=("scratch", "pit")
    )
    entries = []
    for seed in seeds:
        path, sha = write_image(folder, seed)
        entries.append(NewImage(str(path), sha, SIZE[1], SIZE[0], "unlabeled", None))
    return [record.id for record, _ in store.add_images(product.id, entries)]


def mask(seed: int) -> np.ndarray:
    out = np.zeros(SIZE, np.uint8)
    out[seed % 10 : seed % 10 + 5, 3 : 3 + seed % 20 + 1] = 1
    return out


def give_feedback(store: Store, image_ids: list[int], *, verdict: str, seed: int) -> None:
    """An inspector's work on each image: a mask, a text and a verdict (with a chain)."""
    author = f"inspector-{seed}"
    for n, image_id in enumerate(image_ids):
        first = store.add_mask_revision(image_id, mask(seed + n), source="expert", author="model")
        store.add_mask_revision(
            image_id, mask(seed + n + 1), source="inspector", author=author, parent_id=first.id
        )
        text = Explanation(
            verdict="anomalous" if verdict == "anomalous" else "normal",
            defect_type="scratch" if verdict == "anomalous" else "",
            description=f"seen by {author}",
        )
        store.add_explanation(
            image_id, text, source="inspector", author=author, model_version="adapter-1"
        )
        store.add_review(image_id, verdict, reviewer=author, model_version="adapter-1")  # type: ignore[arg-type]


def revision_keys(store: Store) -> set[tuple[str, str, int]]:
    """Every revision's global key (table, station, id at that station)."""
    conn = store._db().conn
    keys = set()
    for table in TABLES.values():
        for station, origin in conn.execute(
            f"SELECT COALESCE(origin_station, ?), COALESCE(origin_id, id) FROM {table}",
            (store.station_id,),
        ):
            keys.add((table, station, origin))
    return keys


def current_state(store: Store) -> dict[str, Any]:
    """Per image (by content hash): what every station must agree on after syncing."""
    product = store.get_product(PRODUCT)
    state: dict[str, Any] = {}
    for row in store.query_images(product.id, order_by="name"):
        image_id = row.image.id
        latest_mask = store.latest_mask_revision(image_id)
        explanation = store.latest_explanation(image_id)
        review = store.latest_review(image_id)
        state[row.image.sha256] = (
            row.review_verdict,
            row.conflict,
            row.defect_type,
            store.count_images(product.id, review_state="reviewed") > 0,
            None if latest_mask is None else (latest_mask.blob, latest_mask.author),
            None if explanation is None else (explanation.explanation, explanation.created_at),
            None if review is None else (review.verdict, review.reviewer, review.created_at),
            len(store.mask_history(image_id)),
            len(store.explanation_history(image_id)),
            len(store.review_history(image_id)),
        )
    return state
