"""Schema migrations, applied in order; ``PRAGMA user_version`` counts how many ran.

Append a function to :data:`MIGRATIONS` to change the schema; never edit a released one.

Revision tables (masks, explanations, reviews) are append-only and the source of truth.
The ``latest_*`` columns on ``images`` are a denormalised copy of the newest revision,
written in the same transaction as the revision, so that the review queue can filter and
sort 100,000 images through an index instead of joining four tables per row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from workstation.store.model_files import adopt_legacy_model_folders, store_models_dir


def _v1(db: sqlite_utils.Database) -> None:
    db.table("products").create(
        {
            "id": int,
            "name": str,
            "description": str,
            "normality_rules": str,
            "defect_vocabulary": str,
            "threshold": float,
            "created_at": str,
        },
        pk="id",
        not_null={"name", "description", "normality_rules", "defect_vocabulary", "created_at"},
    )
    db.table("products").create_index(["name"], unique=True)

    db.table("images").create(
        {
            "id": int,
            "product_id": int,
            "path": str,
            "name": str,
            "sha256": str,
            "width": int,
            "height": int,
            "split": str,
            "source_label": str,
            "imported_at": str,
            "latest_score": float,
            "latest_anomalous": int,
            "latest_review_verdict": str,
            "reviewed": int,
            "latest_defect_type": str,
            "priority": float,
        },
        pk="id",
        foreign_keys=[("product_id", "products", "id")],
        not_null={"product_id", "path", "name", "sha256", "width", "height", "split", "reviewed"},
        defaults={"reviewed": 0},
    )
    images = db.table("images")
    images.create_index(["product_id", "sha256"], unique=True)
    images.create_index(["product_id", "reviewed", "latest_score"])
    images.create_index(["product_id", "reviewed", "priority"])
    images.create_index(["product_id", "latest_score"])
    images.create_index(["product_id", "priority"])
    images.create_index(["product_id", "split", "source_label"])
    images.create_index(["product_id", "name"])

    revision_columns = {
        "id": int,
        "image_id": int,
        "source": str,
        "author": str,
        "created_at": str,
        "parent_id": int,
        "model_version": str,
    }
    db.table("mask_revisions").create(
        {**revision_columns, "blob": str},
        pk="id",
        foreign_keys=[("image_id", "images", "id"), ("parent_id", "mask_revisions", "id")],
        not_null={"image_id", "source", "author", "created_at", "blob"},
    )
    db.table("mask_revisions").create_index(["image_id", "id"])
    db.table("mask_revisions").create_index(["blob"])

    db.table("explanation_revisions").create(
        {
            **revision_columns,
            "verdict": str,
            "defect_type": str,
            "location": str,
            "severity": str,
            "description": str,
        },
        pk="id",
        foreign_keys=[("image_id", "images", "id"), ("parent_id", "explanation_revisions", "id")],
        not_null={"image_id", "source", "author", "created_at", "verdict"},
    )
    db.table("explanation_revisions").create_index(["image_id", "id"])

    db.table("reviews").create(
        {
            "id": int,
            "image_id": int,
            "verdict": str,
            "reason": str,
            "reviewer": str,
            "created_at": str,
            "model_version": str,
        },
        pk="id",
        foreign_keys=[("image_id", "images", "id")],
        not_null={"image_id", "verdict", "reason", "reviewer", "created_at"},
    )
    db.table("reviews").create_index(["image_id", "id"])

    db.table("predictions").create(
        {
            "id": int,
            "image_id": int,
            "model_version": str,
            "score": float,
            "anomalous": int,
            "map_blob": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("image_id", "images", "id")],
        not_null={"image_id", "model_version", "score", "anomalous", "created_at"},
    )
    db.table("predictions").create_index(["image_id", "model_version"], unique=True)
    db.table("predictions").create_index(["model_version", "image_id"])
    db.table("predictions").create_index(["map_blob"])

    db.table("rounds").create(
        {
            "id": int,
            "product_id": int,
            "kind": str,
            "status": str,
            "manifest_path": str,
            "started_at": str,
            "finished_at": str,
            "result_version_id": int,
            "message": str,
        },
        pk="id",
        foreign_keys=[("product_id", "products", "id")],
        not_null={"product_id", "kind", "status", "manifest_path", "started_at", "message"},
    )
    db.table("model_versions").create(
        {
            "id": int,
            "product_id": int,
            "name": str,
            "kind": str,
            "state": str,
            "parent_id": int,
            "round_id": int,
            "path": str,
            "metrics": str,
            "config": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[
            ("product_id", "products", "id"),
            ("parent_id", "model_versions", "id"),
            ("round_id", "rounds", "id"),
        ],
        not_null={"product_id", "name", "kind", "state", "metrics", "config", "created_at"},
    )
    db.table("model_versions").create_index(["name"], unique=True)
    db.table("model_versions").create_index(["product_id", "kind", "state"])

    db.table("queue_priorities").create(
        {"image_id": int, "product_id": int, "priority": float},
        pk="image_id",
        foreign_keys=[("image_id", "images", "id"), ("product_id", "products", "id")],
        not_null={"product_id", "priority"},
    )
    db.table("queue_priorities").create_index(["product_id"])

    db.table("app_state").create({"key": str, "value": str}, pk="key", not_null={"value"})


def _v2(db: sqlite_utils.Database) -> None:
    """Model files move in with their store; fits take a lock row.

    ``files_sha256`` is the content hash of a version's folder, checked on every load.
    Rows written before this version are adopted as follows:

    * trained versions (adapter, vlm, ...) lived in the store's own ``rounds/`` folder,
      one folder per round, so their files are this store's: they are copied into
      ``<store>.models/<version>/`` and hashed (the originals are left where they were);
    * fitted ``experts`` lived in the shared ``<home>/models/<product>/experts-N``, which
      another store with a product of the same name may have overwritten. Nothing can
      tell whose model such a folder holds now, so they keep no hash: the inspector
      treats an unhashed experts version as stale and refits it (seconds to minutes),
      and ``doctor`` says so.
    """
    db.execute("ALTER TABLE model_versions ADD COLUMN files_sha256 TEXT")
    db.table("fit_locks").create(
        {
            "product_id": int,
            "kind": str,
            "holder": str,
            "pid": int,
            "host": str,
            "started_at": float,
        },
        pk=("product_id", "kind"),
        foreign_keys=[("product_id", "products", "id")],
        not_null={"holder", "pid", "host", "started_at"},
    )
    database_file = next(
        (row[2] for row in db.execute("PRAGMA database_list").fetchall() if row[1] == "main"), ""
    )
    if database_file:
        adopt_legacy_model_folders(db.conn, store_models_dir(Path(database_file)))


def _v3(db: sqlite_utils.Database) -> None:
    """What the review queue needs to say why: each expert's own score with every prediction
    (JSON; experts that rank an image differently disagree), the image's embedding (float16
    bytes; coverage finds what nothing reviewed resembles), and the reason written with
    each priority, which the review list shows ("experts disagree", "near the threshold")."""
    db.table("predictions").add_column("expert_scores", str)
    db.table("predictions").add_column("embedding", bytes)
    db.table("images").add_column("priority_reason", str)
    db.table("queue_priorities").add_column("reason", str)


SYNC_REVISION_TABLES = ("mask_revisions", "explanation_revisions", "reviews")
"""The append-only tables that feedback bundles carry between stations."""


def _v4_sync(db: sqlite_utils.Database) -> None:
    """Feedback travels between stations (``iad-workstation sync``): provenance columns.

    * a station id (uuid) for this store, in ``app_state`` under ``station.id``;
    * every revision gets ``origin_station`` / ``origin_id``: NULL for a row made here
      (its global key is then this station's id and its own ``id``), the other station's
      key for a row imported from a bundle, unique, which makes a second import a no-op;
      ``received_at`` is when an imported row arrived (``sync export --since`` uses it);
    * a review records ``seen``: the keys (``station:id``) of the other stations' decisive
      reviews of the image that were present when it was made, which tells a deliberate
      override from a conflict (two stations' verdicts made without seeing each other);
    * ``images.sync_conflict`` flags such a conflict in the review queue.

    Self-contained: touches only what it adds, so migrations of other branches can be
    numbered before or after it.
    """
    for table in SYNC_REVISION_TABLES:
        db.execute(f"ALTER TABLE {table} ADD COLUMN origin_station TEXT")
        db.execute(f"ALTER TABLE {table} ADD COLUMN origin_id INTEGER")
        db.execute(f"ALTER TABLE {table} ADD COLUMN received_at TEXT")
        db.execute(
            f"CREATE UNIQUE INDEX idx_{table}_origin ON {table} (origin_station, origin_id) "
            "WHERE origin_station IS NOT NULL"
        )
    db.execute("ALTER TABLE reviews ADD COLUMN seen TEXT")
    db.execute("ALTER TABLE images ADD COLUMN sync_conflict INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "INSERT OR IGNORE INTO app_state (key, value) VALUES ('station.id', ?)",
        (str(uuid.uuid4()),),
    )


def _v5_thresholds(db: sqlite_utils.Database) -> None:
    """Who set a product's threshold, when, to what, and for which experts version
    (``threshold_settings``, append-only: the audit trail), and the images an engineer
    marked golden (``golden_images``: held out of every round, judged by the gate).

    Self-contained: touches only what it adds.
    """
    db.execute(
        "CREATE TABLE threshold_settings (id INTEGER PRIMARY KEY, "
        "product_id INTEGER NOT NULL REFERENCES products(id), threshold REAL NOT NULL, "
        "author TEXT NOT NULL, model_version TEXT, reason TEXT NOT NULL DEFAULT '', "
        "created_at TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX idx_threshold_settings_product ON threshold_settings (product_id)")
    db.execute(
        "CREATE TABLE golden_images (image_id INTEGER PRIMARY KEY REFERENCES images(id), "
        "author TEXT NOT NULL, created_at TEXT NOT NULL)"
    )


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _v1,
    _v2,
    _v3,
    _v4_sync,
    _v5_thresholds,
)
