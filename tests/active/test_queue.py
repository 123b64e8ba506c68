"""The review queue in the store: scored unreviewed images get priorities and reasons."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from workstation.active.queue import (
    compute_queue,
    embeddings_of,
    pooled_map,
    refresh_queue,
    shared_expert_scores,
)
from workstation.active.strategies import REASONS, Candidates
from workstation.core.types import Prediction
from workstation.store.repository import Store
from workstation.store.rows import NewPrediction


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


def _predict(store: Store, ids: list[int], scores: list[float], experts: bool) -> None:
    rng = np.random.default_rng(0)
    entries = []
    for image_id, score in zip(ids, scores, strict=True):
        heat = rng.random((16, 16)).astype(np.float32) * score
        # the adapter ranks the images in the opposite order to the few-shot bank
        own = {"fewshot": score, "adapter": 1.0 / (1.0 + score)} if experts else None
        entries.append(NewPrediction(image_id, "experts-1", score, score >= 1.0, heat, own))
    store.add_predictions(entries)


def test_refresh_writes_priorities_and_reasons_for_scored_unreviewed_images(
    tmp_path: Path,
) -> None:
    store, ids = _store(tmp_path)
    _predict(store, ids[:5], [0.2, 0.9, 1.05, 3.0, 0.5], experts=False)
    store.add_review(ids[0], "normal", reviewer="ann")
    queue = refresh_queue(store, "plate", budget=2)
    assert set(queue.priorities) == set(ids[1:5])  # reviewed and unscored images get none
    rows = store.query_images(store.get_product("plate").id, review_state="unreviewed")
    by_priority = sorted(queue.priorities, key=queue.priorities.get, reverse=True)  # type: ignore[arg-type]
    assert [r.image.id for r in rows][:4] == by_priority
    assert {r.priority_reason for r in rows[:4]} <= set(REASONS.values())
    assert rows[0].priority_reason == queue.reasons[rows[0].image.id]
    assert rows[-1].image.id == ids[5] and rows[-1].priority is None
    assert rows[-1].priority_reason is None
    store.close()


def test_only_a_coverage_order_reads_the_anomaly_maps(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The default order needs the scores alone; reading 100,000 maps for nothing would
    make every inspection's last step the slowest."""
    store, ids = _store(tmp_path)
    _predict(store, ids, [0.2, 0.9, 1.05, 3.0, 0.5, 0.1], experts=False)
    loads: list[int] = []
    real = store.load_map
    monkeypatch.setattr(store, "load_map", lambda p: loads.append(p.image_id) or real(p))
    refresh_queue(store, "plate", budget=2)
    assert loads == []
    refresh_queue(store, "plate", strategy="mixed", budget=2)
    assert sorted(loads) == sorted(ids)  # no embeddings kept: pooled maps
    store.close()


def test_experts_that_disagree_give_their_reason(tmp_path: Path) -> None:
    store, ids = _store(tmp_path)
    _predict(store, ids, [0.2, 0.9, 1.05, 3.0, 0.5, 0.1], experts=True)
    queue = refresh_queue(store, "plate", strategy="disagreement", budget=2)
    assert set(queue.reasons.values()) == {REASONS["disagreement"]}
    # the fused score's extremes are where the two experts' ranks differ most
    first = max(queue.priorities, key=queue.priorities.get)  # type: ignore[arg-type]
    assert first in (ids[3], ids[5])
    store.close()


def test_queue_spreads_over_kept_embeddings_else_over_pooled_maps(tmp_path: Path) -> None:
    store, ids = _store(tmp_path)
    _predict(store, ids, [2.0, 1.9, 1.8, 1.7, 0.2, 0.1], experts=False)
    rows = store.query_images(store.get_product("plate").id, order_by="name")
    predictions = [store.latest_prediction(r.image.id) for r in rows]
    pooled = embeddings_of(store, rows, predictions)
    assert pooled.shape == (6, 8 * 8 + 1)
    # the few-shot expert kept an embedding with every prediction: those are used
    kept = np.eye(6, 3, dtype=np.float32) + 1
    store.add_predictions(
        [
            NewPrediction(r.image.id, "experts-2", 1.0, True, embedding=e)
            for r, e in zip(rows, kept, strict=True)
        ]
    )
    predictions = [store.latest_prediction(r.image.id) for r in rows]
    assert np.allclose(embeddings_of(store, rows, predictions), kept)
    # one image without: all fall back together (distances across kinds mean nothing)
    assert embeddings_of(store, rows, [None, *predictions[1:]]).shape == (6, 65)
    store.close()


def test_shared_expert_scores_keep_only_experts_that_scored_every_image() -> None:
    def prediction(scores: dict[str, float]) -> Prediction:
        return Prediction(1, 1, "v", 1.0, True, None, "", scores)

    shared = shared_expert_scores(
        [prediction({"fewshot": 1.0, "adapter": 0.2}), prediction({"fewshot": 2.0}), None]
    )
    assert shared == {}
    both = shared_expert_scores(
        [prediction({"fewshot": 1.0, "adapter": 0.2}), prediction({"fewshot": 2.0, "adapter": 0.1})]
    )
    assert {k: v.tolist() for k, v in both.items()} == {
        "adapter": [0.2, 0.1],
        "fewshot": [1.0, 2.0],
    }


def test_expert_disagreement_raises_priority_and_says_so() -> None:
    candidates = Candidates(
        scores=np.array([1.0, 5.0, 5.0]),
        threshold=1.0,
        embeddings=np.zeros((3, 2)),
        reviewed_embeddings=np.zeros((0, 2)),
        # image 11: the self-taught expert ranks it top, the few-shot expert bottom
        expert_scores={"fewshot": np.array([2.0, 0.5, 3.0]),
                       "selftaught": np.array([0.1, 0.9, 0.5])},
    )
    queue = compute_queue([10, 11, 12], candidates, strategy="disagreement", budget=3)
    assert queue.priorities[11] > max(queue.priorities[10], queue.priorities[12])
    assert queue.reasons[11] == REASONS["disagreement"]


def test_pooled_map_is_a_small_grid() -> None:
    heat = np.zeros((40, 80), np.float32)
    heat[:20, :40] = 1
    pooled = pooled_map(heat, grid=2)
    assert pooled.tolist() == [1.0, 0.0, 0.0, 0.0]
