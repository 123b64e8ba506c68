"""The review queue in the store: scored unreviewed images get priorities, others none."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from workstation.active.queue import compute_priorities, pooled_map, refresh_queue
from workstation.store.repository import Store


def _store(tmp_path: Path) -> tuple[Store, list[int]]:
    store = Store.open(tmp_path / "ws.sqlite")
    product = store.create_product("plate")
    ids = []
    for i in range(6):
        record, _ = store.add_image(
            product.id,
            path=str(tmp_path / f"{i}.png"),
            sha256=hashlib.sha256(bytes([i])).hexdigest(),
            width=16,
            height=16,
            split="test",
            source_label=None,
        )
        ids.append(record.id)
    return store, ids


def test_refresh_writes_priorities_for_scored_unreviewed_images(tmp_path: Path) -> None:
    store, ids = _store(tmp_path)
    rng = np.random.default_rng(0)
    for image_id, score in zip(ids[:5], [0.2, 0.9, 1.05, 3.0, 0.5], strict=True):
        heat = rng.random((16, 16)).astype(np.float32) * score
        store.add_prediction(
            image_id,
            model_version="experts-1",
            score=score,
            anomalous=score >= 1.0,
            anomaly_map=heat,
        )
    store.add_review(ids[0], "normal", reviewer="ann")
    priorities = refresh_queue(store, "plate", budget=2)
    assert set(priorities) == set(ids[1:5])  # reviewed and unscored images get none
    rows = store.query_images(store.get_product("plate").id, review_state="unreviewed")
    assert [r.image.id for r in rows][:4] == sorted(priorities, key=priorities.get, reverse=True)
    assert rows[-1].image.id == ids[5] and rows[-1].priority is None
    store.close()


def test_vlm_disagreement_and_uncertainty_raise_priority() -> None:
    embeddings = np.zeros((3, 2))
    priorities = compute_priorities(
        [10, 11, 12],
        [1.0, 5.0, 5.0],
        threshold=1.0,
        embeddings=embeddings,
        reviewed_embeddings=np.zeros((0, 2)),
        disagreement=np.array([0.0, 1.0, 0.0]),
        trust=1.0,
        budget=3,
    )
    assert priorities[10] > priorities[11] > priorities[12]


def test_pooled_map_is_a_small_grid() -> None:
    heat = np.zeros((40, 80), np.float32)
    heat[:20, :40] = 1
    pooled = pooled_map(heat, grid=2)
    assert pooled.tolist() == [1.0, 0.0, 0.0, 0.0]
