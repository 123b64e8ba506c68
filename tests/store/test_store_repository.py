"""Store API: products, images, revisions, predictions, models, rounds, queue, state."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from workstation.core.errors import SchemaTooNewError, UserError
from workstation.core.types import Explanation
from workstation.store.db import SCHEMA_VERSION, read_schema_version
from workstation.store.repository import Store
from workstation.store.rows import NewImage, NewPrediction


def add(store: Store, product_id: int, n: int, *, size: tuple[int, int] = (8, 10)) -> list[int]:
    ids = []
    for i in range(n):
        record, _ = store.add_image(
            product_id,
            path=f"/data/img {i}.png",
            sha256=f"{product_id:04d}{i:060d}",
            width=size[1],
            height=size[0],
            split="test",
            source_label="good" if i % 2 else "scratch",
        )
        ids.append(record.id)
    return ids


def test_open_sets_wal_foreign_keys_and_busy_timeout(store: Store) -> None:
    db = store._db()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    expected = {
        "products",
        "images",
        "mask_revisions",
        "explanation_revisions",
        "reviews",
        "predictions",
        "model_versions",
        "rounds",
        "queue_priorities",
        "app_state",
    }
    assert expected <= set(db.table_names())


def old_store(path: Path, version: int) -> sqlite_utils.Database:
    """A store as a program of schema ``version`` left it: one product with image 7 queued
    at priority 0.5. The caller adds rows, commits and closes."""
    from workstation.store.schema import MIGRATIONS

    db = sqlite_utils.Database(path)
    for migration in MIGRATIONS[:version]:
        migration(db)
    db.execute(f"PRAGMA user_version = {version}")
    db["products"].insert(
        {"id": 1, "name": "p", "description": "", "normality_rules": "[]",
         "defect_vocabulary": "[]", "created_at": "2026-01-01"}
    )
    db["images"].insert(
        {"id": 7, "product_id": 1, "path": "/a.png", "name": "a.png", "sha256": "0" * 64,
         "width": 8, "height": 8, "split": "test", "reviewed": 0, "priority": 0.5}
    )
    return db


def test_a_version_1_store_is_migrated_without_losing_its_queue(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    db = old_store(path, 1)
    db.conn.commit()
    db.conn.close()
    with Store.open(path) as store:
        (row,) = store.query_images(1)
        assert (row.image.id, row.priority, row.priority_reason) == (7, 0.5, None)
        store.set_priorities(1, {7: 0.9}, {7: "near the threshold"})
        assert store.query_images(1)[0].priority_reason == "near the threshold"
    assert read_schema_version(path) == SCHEMA_VERSION


def test_a_version_2_store_keeps_its_predictions_through_migration_3(tmp_path: Path) -> None:
    """Migration 3 (what the queue needs to say why) only adds columns: predictions written
    before it read back with no expert scores and no embedding, and the queue falls back."""
    path = tmp_path / "v2.sqlite"
    db = old_store(path, 2)
    db["predictions"].insert(
        {"id": 3, "image_id": 7, "model_version": "experts-1", "score": 1.25, "anomalous": 1,
         "map_blob": None, "created_at": "2026-01-02"}
    )
    db.conn.commit()
    db.conn.close()
    with Store.open(path) as store:
        prediction = store.latest_prediction(7)
        assert prediction is not None
        assert (prediction.score, prediction.anomalous) == (1.25, True)
        assert prediction.expert_scores == {} and prediction.embedding is None
        assert store.query_images(1)[0].priority_reason is None
    assert read_schema_version(path) == SCHEMA_VERSION == 5


def test_newer_schema_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    conn.commit()
    conn.close()
    assert read_schema_version(path) == SCHEMA_VERSION + 3
    with pytest.raises(SchemaTooNewError) as caught:
        Store.open(path)
    message = str(caught.value)
    assert str(SCHEMA_VERSION + 3) in message and str(SCHEMA_VERSION) in message
    assert "update" in message


def test_a_file_that_is_not_a_store_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("not a database, just text" * 100)
    with pytest.raises(UserError, match="not a workstation store"):
        Store.open(path)
    with pytest.raises(UserError, match="not a readable"):
        read_schema_version(path)


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store.open(path) as store:
        product = store.create_product("p", normality_rules=["flat"], defect_vocabulary=["dent"])
        add(store, product.id, 3)
    with Store.open(path) as store:
        assert store.get_product("p").normality_rules == ("flat",)
        assert len(store.list_images(product.id)) == 3


def test_products(store: Store) -> None:
    product = store.create_product("plate", description="a plate", defect_vocabulary=["dent"])
    assert store.get_product(product.id) == product
    assert store.find_product("nothing") is None
    with pytest.raises(UserError, match="already exists"):
        store.create_product("plate")
    with pytest.raises(UserError, match="plate"):
        store.get_product("missing")
    updated = store.update_product(product.id, threshold=0.7, normality_rules=["shiny"])
    assert updated.threshold == 0.7 and updated.normality_rules == ("shiny",)
    assert updated.description == "a plate"
    assert [p.name for p in store.list_products()] == ["plate"]


def test_add_image_is_idempotent_by_hash(store: Store) -> None:
    product = store.create_product("p")
    first, created = store.add_image(
        product.id,
        path="/a.png",
        sha256="a" * 64,
        width=4,
        height=3,
        split="train",
        source_label="good",
    )
    again, created_again = store.add_image(
        product.id,
        path="/elsewhere/b.png",
        sha256="a" * 64,
        width=4,
        height=3,
        split="train",
        source_label="good",
    )
    assert created and not created_again and again == first
    other = store.create_product("q")
    _, created_other = store.add_image(
        other.id,
        path="/a.png",
        sha256="a" * 64,
        width=4,
        height=3,
        split="train",
        source_label="good",
    )
    assert created_other  # the same file may belong to two products
    assert store.list_images(product.id, split="train", source_label="good") == [first]
    with pytest.raises(ValueError, match="split"):
        store.add_image(
            product.id,
            path="/c.png",
            sha256="c" * 64,
            width=4,
            height=3,
            split="validation",
            source_label=None,
        )  # type: ignore[arg-type]


def test_mask_revisions_are_append_only_with_history(store: Store) -> None:
    product = store.create_product("p")
    (image_id,) = add(store, product.id, 1)
    truth = np.zeros((8, 10), np.uint8)
    truth[2:4, 3:6] = 255  # any nonzero value is defect
    gt = store.add_mask_revision(image_id, truth, source="ground_truth", author="import")
    edit = store.add_mask_revision(
        image_id, np.ones((8, 10), bool), source="inspector", author="ann", parent_id=gt.id
    )
    vlm = store.add_mask_revision(
        image_id, truth, source="vlm:v3", author="model", model_version="v3"
    )
    assert [r.id for r in store.mask_history(image_id)] == [gt.id, edit.id, vlm.id]
    assert store.latest_mask_revision(image_id) == vlm
    assert store.latest_mask_revision(image_id, sources=("inspector",)) == edit
    assert store.latest_mask_revision(image_id, sources=("vlm",)) == vlm
    loaded = store.load_mask(gt)
    assert loaded.dtype == np.uint8 and set(np.unique(loaded)) == {0, 1}
    assert np.array_equal(loaded, (truth > 0).astype(np.uint8))
    assert vlm.blob == gt.blob  # content addressed: same mask, same blob
    with pytest.raises(UserError, match="10x8"):
        store.add_mask_revision(
            image_id, np.zeros((5, 5), np.uint8), source="inspector", author="ann"
        )
    with pytest.raises(ValueError, match="source"):
        store.add_mask_revision(image_id, truth, source="oracle", author="x")


def test_failed_mask_write_leaves_no_blob(store: Store) -> None:
    product = store.create_product("p")
    (image_id,) = add(store, product.id, 1)
    mask = np.zeros((8, 10), np.uint8)
    mask[1, 1] = 1
    with pytest.raises(sqlite3.IntegrityError):
        store.add_mask_revision(image_id, mask, source="inspector", author="a", parent_id=999)
    assert list(store.blobs.iter_blobs()) == []


def test_explanations_reviews_and_denormalised_queue_columns(store: Store) -> None:
    product = store.create_product("p")
    a, b, c = add(store, product.id, 3)
    store.add_explanation(
        a,
        Explanation(verdict="anomalous", defect_type="dent", location="top left", severity="high"),
        source="template",
        author="template",
    )
    fix = store.add_explanation(
        a, Explanation(verdict="anomalous", defect_type="scratch"), source="inspector", author="ann"
    )
    assert store.latest_explanation(a) == fix
    assert store.latest_explanation(a, sources=("template",)).explanation.defect_type == "dent"
    assert len(store.explanation_history(a)) == 2
    store.add_review(a, "anomalous", reviewer="ann", reason="deep")
    store.add_review(b, "skipped", reviewer="ann")
    assert store.latest_review(a).reason == "deep"
    assert [r.verdict for r in store.list_reviews(product.id)] == ["anomalous", "skipped"]
    reviewed = store.query_images(product.id, review_state="reviewed")
    assert [r.image.id for r in reviewed] == [a]
    assert reviewed[0].defect_type == "scratch" and reviewed[0].review_verdict == "anomalous"
    unreviewed = {r.image.id for r in store.query_images(product.id, review_state="unreviewed")}
    assert unreviewed == {b, c}  # a skip decides nothing
    assert store.count_images(product.id, defect_type="scratch") == 1
    with pytest.raises(ValueError):
        store.add_review(a, "maybe", reviewer="ann")  # type: ignore[arg-type]


def test_predictions_scores_filters_and_orders(store: Store) -> None:
    product = store.create_product("p")
    ids = add(store, product.id, 6)
    scores = [0.1, 0.9, 0.5, 0.7, 0.3, None]
    for image_id, score in zip(ids, scores, strict=True):
        if score is not None:
            store.add_prediction(
                image_id, model_version="e1", score=score, anomalous=score >= 0.5, anomaly_map=None
            )
    rows = store.query_images(product.id, score_min=0.3, score_max=0.7, order_by="score")
    assert [r.score for r in rows] == [0.7, 0.5, 0.3]
    assert store.count_images(product.id, predicted_anomalous=True) == 3
    assert [
        r.image.id for r in store.query_images(product.id, order_by="score", limit=2, offset=1)
    ] == [ids[3], ids[2]]
    by_score = store.query_images(product.id, order_by="score")
    assert by_score[-1].score is None  # never predicted: last
    names = [r.image.name for r in store.query_images(product.id, order_by="name")]
    assert names == sorted(names)
    # a newer prediction (another model version) becomes the image's score
    heat = np.linspace(0, 1, 80, dtype=np.float64).reshape(8, 10)
    newest = store.add_prediction(
        ids[0], model_version="e2", score=0.95, anomalous=True, anomaly_map=heat
    )
    assert store.query_images(product.id, order_by="score")[0].image.id == ids[0]
    assert store.latest_prediction(ids[0]) == newest
    assert store.latest_prediction(ids[0], model_version="e1").score == 0.1
    assert np.allclose(store.load_map(newest), heat, atol=1e-6)
    assert store.predicted_image_ids(product.id, "e1") == set(ids[:5])
    # predicting again with the same version replaces the row
    again = store.add_prediction(
        ids[0], model_version="e2", score=0.2, anomalous=False, anomaly_map=None
    )
    assert again.id == newest.id and again.score == 0.2
    batch = store.add_predictions([NewPrediction(i, "e3", 0.4, False) for i in ids])
    assert [p.image_id for p in batch] == ids
    assert batch[0].expert_scores == {}


def test_predictions_keep_each_experts_score(store: Store) -> None:
    product = store.create_product("p")
    (image,) = add(store, product.id, 1)
    scores = {"fewshot": 0.7, "adapter": 0.02}
    (saved,) = store.add_predictions([NewPrediction(image, "e1", 1.3, True, None, scores)])
    assert saved.expert_scores == scores
    assert store.latest_prediction(image).expert_scores == scores  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="finite"):
        store.add_predictions([NewPrediction(image, "e2", 1.0, True, None, {"a": float("nan")})])
    assert store.latest_prediction(image).model_version == "e1"  # type: ignore[union-attr]


def test_predictions_keep_the_image_embedding_compactly(store: Store) -> None:
    product = store.create_product("p")
    first, second = add(store, product.id, 2)
    embedding = np.linspace(-2, 2, 92).astype(np.float32)
    (saved,) = store.add_predictions([NewPrediction(first, "e1", 1.0, True, embedding=embedding)])
    assert saved.embedding is not None and saved.embedding.dtype == np.float32
    assert np.allclose(saved.embedding, embedding, atol=2e-3)  # kept as float16
    bad = [
        NewPrediction(second, "e1", 1.0, True),
        NewPrediction(first, "e2", 1.0, True, embedding=np.zeros((2, 2))),
    ]
    with pytest.raises(ValueError, match="1-D"):
        store.add_predictions(bad)
    assert store.latest_prediction(second) is None  # the whole batch was refused
    assert store.latest_prediction(first).embedding is not None  # type: ignore[union-attr]


def test_priorities_order_the_queue(store: Store) -> None:
    product = store.create_product("p")
    ids = add(store, product.id, 4)
    store.set_priorities(product.id, {ids[2]: 5.0, ids[0]: 1.0})
    order = [r.image.id for r in store.query_images(product.id)]
    assert order[:2] == [ids[2], ids[0]]
    assert [r.priority_reason for r in store.query_images(product.id)[:2]] == [None, None]
    store.set_priorities(product.id, {ids[3]: 2.0}, {ids[3]: "experts disagree"})  # replaces
    rows = store.query_images(product.id)
    assert rows[0].image.id == ids[3] and rows[1].priority is None
    assert rows[0].priority_reason == "experts disagree"
    assert all(r.priority_reason is None for r in rows[1:])
    assert store.get_priorities(product.id) == {ids[3]: 2.0}
    other = store.create_product("q")
    (foreign,) = add(store, other.id, 1)
    with pytest.raises(ValueError, match="not in this product"):
        store.set_priorities(product.id, {foreign: 1.0})
    assert store.get_priorities(product.id) == {ids[3]: 2.0}  # failed call changed nothing


def test_model_versions_and_rounds(store: Store) -> None:
    product = store.create_product("p")
    first = store.add_model_version(
        product.id, name="adapter-1", kind="adapter", state="active", metrics={"auroc": 0.9}
    )
    run = store.add_round(product.id, kind="adapter", manifest_path="/m.json")
    second = store.add_model_version(
        product.id,
        name="adapter-2",
        kind="adapter",
        state="candidate",
        parent_id=first.id,
        round_id=run.id,
        config={"rank": 8},
    )
    assert store.active_model_version(product.id, "adapter") == first
    promoted = store.set_model_state(second.id, "active")
    assert promoted.state == "active"
    assert store.get_model_version("adapter-1").state == "retired"
    assert store.get_model_version(second.id).config == {"rank": 8}
    assert [v.name for v in store.list_model_versions(product.id, kind="adapter")] == [
        "adapter-1",
        "adapter-2",
    ]
    assert store.active_model_version(product.id, "vlm") is None
    with pytest.raises(UserError, match="already exists"):
        store.add_model_version(product.id, name="adapter-1", kind="adapter", state="candidate")
    assert run.status == "pending"
    done = store.update_round(run.id, status="succeeded", result_version_id=second.id)
    assert done.finished_at and done.result_version_id == second.id
    assert store.list_rounds(product.id) == [done]


def test_app_state(store: Store) -> None:
    assert store.get_state("last_image", "none") == "none"
    store.set_state("last_image", "12")
    store.set_state("last_image", "13")
    assert store.get_state("last_image") == "13"


def test_batch_add_images_with_ground_truth(store: Store) -> None:
    product = store.create_product("p")
    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 1:3] = 1
    entries = [
        NewImage("/x/a.png", "1" * 64, 5, 4, "test", "dent", mask),
        NewImage("/x/b.png", "2" * 64, 5, 4, "train", "good"),
    ]
    results = store.add_images(product.id, entries)
    assert [created for _, created in results] == [True, True]
    gt = store.latest_mask_revision(results[0][0].id, sources=("ground_truth",))
    assert gt is not None and np.array_equal(store.load_mask(gt), mask)
    assert store.add_images(product.id, entries)[0][1] is False
    assert len(store.mask_history(results[0][0].id)) == 1


def test_gui_thread_and_worker_write_at_once_without_locked_errors(tmp_path: Path) -> None:
    """Two threads (and a second process-like connection) hammer writes; nobody sees 'locked'."""
    store = Store.open(tmp_path / "busy.sqlite")
    product = store.create_product("p")
    ids = add(store, product.id, 4)
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def gui() -> None:
        start.wait()
        for n in range(150):
            store.add_review(ids[n % 4], "accepted", reviewer="gui")
            store.set_state("cursor", str(n))

    def worker() -> None:
        start.wait()
        for n in range(60):
            mask = np.zeros((8, 10), np.uint8)
            mask[n % 8, n % 10] = 1
            store.add_mask_revision(ids[n % 4], mask, source="expert", author="worker")
            store.add_predictions([NewPrediction(i, f"v{n}", n / 60, False) for i in ids])

    def other_process_connection() -> None:
        other = Store.open(tmp_path / "busy.sqlite")  # its own connections, like a 2nd app
        start.wait()
        for n in range(100):
            other.set_state(f"other-{n}", "x")
        other.close()

    def guard(fn):  # type: ignore[no-untyped-def]
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guard(f)) for f in (gui, worker, other_process_connection)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.list_reviews(product.id)) == 150
    assert sum(len(store.mask_history(i)) for i in ids) == 60
    store.close()


def test_damaged_blob_is_a_clear_error_and_found_by_the_check(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite", fsync_blobs=False) as store:
        product = store.create_product("p")
        (image_id,) = add(store, product.id, 1)
        mask = np.zeros((8, 10), np.uint8)
        mask[3, 3] = 1
        revision = store.add_mask_revision(image_id, mask, source="inspector", author="a")
        assert np.array_equal(store.load_mask(revision), mask)
        path = store.blobs.path_of(revision.blob)
        assert path is not None and path.suffix == ".mask"
        path.write_bytes(path.read_bytes()[:10])  # what a power cut could leave
        with pytest.raises(UserError, match="damaged"):
            store.load_mask(revision)
        path.unlink()
        assert any("missing" in problem for problem in store.check_integrity())


def test_batch_of_mask_revisions_is_all_or_nothing(store: Store) -> None:
    from workstation.store.rows import NewMaskRevision

    product = store.create_product("p")
    ids = add(store, product.id, 3)
    masks = []
    for n in range(3):
        mask = np.zeros((8, 10), np.uint8)
        mask[n, n] = 1
        masks.append(mask)
    entries = [
        NewMaskRevision(i, m, "expert", "model", model_version="e1")
        for i, m in zip(ids, masks, strict=True)
    ]
    revisions = store.add_mask_revisions(entries)
    assert [r.image_id for r in revisions] == ids
    assert all(np.array_equal(store.load_mask(r), m) for r, m in zip(revisions, masks, strict=True))
    fresh = np.zeros((8, 10), np.uint8)
    fresh[7, 9] = 1
    bad = [
        NewMaskRevision(ids[0], fresh, "expert", "model"),
        NewMaskRevision(ids[1], np.zeros((3, 3), np.uint8), "expert", "model"),
    ]
    with pytest.raises(UserError, match="3x3"):
        store.add_mask_revisions(bad)
    assert len(store.mask_history(ids[0])) == 1
    assert store.check_integrity() == []


def test_duplicate_file_in_one_batch_gets_one_ground_truth(store: Store) -> None:
    product = store.create_product("p")
    mask = np.ones((4, 5), np.uint8)
    twin = [NewImage(f"/x/{n}.png", "3" * 64, 5, 4, "test", "dent", mask) for n in "ab"]
    (first, made), (second, again) = store.add_images(product.id, twin)
    assert made and not again and first == second
    assert len(store.mask_history(first.id)) == 1
