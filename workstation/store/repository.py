"""The typed store: every read returns ``workstation.core`` values, every write commits at once.

One SQLite connection per thread (WAL lets the GUI thread read while a worker writes); the
``Store`` object itself is safe to share. Each public write is one ``BEGIN IMMEDIATE``
transaction, so a crash loses at most the call in flight and never leaves half of it.

Arrays live in the :class:`BlobStore` next to the database file. A blob is written inside
the write transaction that references it; since that transaction holds the write lock, a
blob that no row references while we hold the lock can only be the leftover of a crashed
writer, which is what lets :meth:`Store.collect_garbage` run safely on every open.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from workstation.core.errors import CancelledError, UserError
from workstation.core.types import (
    Explanation,
    ExplanationRevision,
    ImageRecord,
    MaskRevision,
    ModelKind,
    ModelState,
    ModelVersion,
    Prediction,
    Product,
    Review,
    ReviewVerdict,
    Round,
    RoundStatus,
    Split,
    check_literal,
    check_revision_source,
)
from workstation.paths import expand_user
from workstation.store.blobs import BlobStore, pid_alive, store_blobs_dir
from workstation.store.current import NEWEST_FIRST, refresh_current, seen_keys
from workstation.store.db import connect, is_read_only_error, migrate, write_transaction
from workstation.store.errors import describe_store_error
from workstation.store.health import referenced_blobs
from workstation.store.model_files import (
    STAGING_PREFIX,
    FilesProblem,
    ModelFilesError,
    files_state,
    fix_for,
    folder_sha256,
    move_into_place,
    resolve_model_path,
    staging_folder,
    store_models_dir,
)
from workstation.store.rows import (
    ImageOrder,
    ImageRow,
    NewImage,
    NewMaskRevision,
    NewPrediction,
    ReviewState,
)

__all__ = ["ImageRow", "NewImage", "NewMaskRevision", "NewPrediction", "Store"]

_UNSET: Any = object()
_GC_STATE_KEY = "store.last_garbage_collection"
_GC_MARGIN_S = 120.0
"""Blobs modified shortly before the last collection are checked again (clock skew, mtime)."""
FIT_LOCK_STALE_S = 6 * 3600.0
"""A fit lock older than this is taken over even if its process seems alive (pid reuse,
another machine on a shared folder): no fit of a few hundred normals takes that long."""
_FIT_LOCK_POLL_S = 0.25
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
STATION_KEY = "station.id"
_IMAGE_COLUMNS = "id, product_id, path, sha256, width, height, split, source_label, imported_at"
_ROW_COLUMNS = (
    f"{_IMAGE_COLUMNS}, latest_score, latest_anomalous, latest_review_verdict, "
    "latest_defect_type, priority, priority_reason, sync_conflict"
)
_ORDERS: dict[str, str] = {
    # Directions chosen so the (product, reviewed, column) indexes serve the sort; a NULL
    # priority or score sorts last in a descending order.
    "priority": "priority DESC, id DESC",
    "score": "latest_score DESC, id DESC",
    "name": "name, id",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _image(row: Sequence[Any]) -> ImageRecord:
    return ImageRecord(
        id=row[0],
        product_id=row[1],
        path=row[2],
        sha256=row[3],
        width=row[4],
        height=row[5],
        split=row[6],
        source_label=row[7],
        imported_at=row[8] or "",
    )


def _product(row: Mapping[str, Any]) -> Product:
    return Product(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        normality_rules=tuple(json.loads(row["normality_rules"])),
        defect_vocabulary=tuple(json.loads(row["defect_vocabulary"])),
        threshold=row["threshold"],
        created_at=row["created_at"],
    )


def _mask_revision(row: Mapping[str, Any]) -> MaskRevision:
    return MaskRevision(
        id=row["id"],
        image_id=row["image_id"],
        blob=row["blob"],
        source=row["source"],
        author=row["author"],
        created_at=row["created_at"],
        parent_id=row["parent_id"],
        model_version=row["model_version"],
    )


def _explanation_revision(row: Mapping[str, Any]) -> ExplanationRevision:
    explanation = Explanation(
        verdict=row["verdict"],
        defect_type=row["defect_type"] or "",
        location=row["location"] or "",
        severity=row["severity"] or "low",
        description=row["description"] or "",
    )
    return ExplanationRevision(
        id=row["id"],
        image_id=row["image_id"],
        explanation=explanation,
        source=row["source"],
        author=row["author"],
        created_at=row["created_at"],
        parent_id=row["parent_id"],
        model_version=row["model_version"],
    )


def _review(row: Mapping[str, Any]) -> Review:
    return Review(
        id=row["id"],
        image_id=row["image_id"],
        verdict=row["verdict"],
        reason=row["reason"],
        reviewer=row["reviewer"],
        created_at=row["created_at"],
        model_version=row["model_version"],
    )


def _prediction(row: Mapping[str, Any]) -> Prediction:
    return Prediction(
        id=row["id"],
        image_id=row["image_id"],
        model_version=row["model_version"],
        score=row["score"],
        anomalous=bool(row["anomalous"]),
        map_blob=row["map_blob"],
        created_at=row["created_at"],
        expert_scores=json.loads(row["expert_scores"]) if row["expert_scores"] else {},
        embedding=(
            None
            if row["embedding"] is None
            else np.frombuffer(row["embedding"], dtype=np.float16).astype(np.float32)
        ),
    )


def _expert_scores_json(scores: Mapping[str, float] | None) -> str | None:
    if not scores:
        return None
    values = {str(k): float(v) for k, v in scores.items()}
    if not all(np.isfinite(v) for v in values.values()):
        raise ValueError(f"expert scores must be finite numbers, got {values}")
    return json.dumps(values, sort_keys=True)


def _embedding_bytes(embedding: np.ndarray | None) -> bytes | None:
    if embedding is None:
        return None
    values = np.asarray(embedding, dtype=np.float32)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"an embedding must be a non-empty finite 1-D array, got {values.shape}")
    return values.astype(np.float16).tobytes()


def _model_version(row: Mapping[str, Any], models_dir: Path) -> ModelVersion:
    path = row["path"]
    if path is not None:
        path = str(resolve_model_path(path, models_dir))
    return ModelVersion(
        id=row["id"],
        product_id=row["product_id"],
        name=row["name"],
        kind=row["kind"],
        state=row["state"],
        parent_id=row["parent_id"],
        round_id=row["round_id"],
        path=path,
        metrics=json.loads(row["metrics"]),
        config=json.loads(row["config"]),
        created_at=row["created_at"],
        files_sha256=row["files_sha256"],
    )


def _round(row: Mapping[str, Any]) -> Round:
    return Round(
        id=row["id"],
        product_id=row["product_id"],
        kind=row["kind"],
        status=row["status"],
        manifest_path=row["manifest_path"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result_version_id=row["result_version_id"],
        message=row["message"],
    )


def _source_filter(sources: tuple[str, ...] | None) -> tuple[str, list[str]]:
    """SQL matching any of ``sources``; ``vlm`` also matches ``vlm:<version>``."""
    if not sources:
        return "", []
    clauses, params = [], []
    for source in sources:
        clauses.append("(source = ? OR source LIKE ?)")
        params += [source, f"{source}:%"]
    return " AND (" + " OR ".join(clauses) + ")", params


def as_binary_mask(mask: np.ndarray) -> np.ndarray:
    """Any array -> uint8 0/1 (nonzero is defect)."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {mask.shape}")
    if mask.dtype == np.uint8 and mask.max(initial=0) <= 1:
        return np.ascontiguousarray(mask)
    return (mask > 0).astype(np.uint8)


class Store:
    """The feedback store: products, images, revisions, predictions, models, rounds."""

    def __init__(self, path: Path, *, fsync_blobs: bool = True) -> None:
        self._path = path
        self._local = threading.local()
        # Weak: a thread that ends drops its connection (closed when collected).
        self._connections: weakref.WeakSet[sqlite_utils.Database] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        self._station: str | None = None
        self.blobs = BlobStore(store_blobs_dir(path), fsync=fsync_blobs)

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def open(cls, path: Path | str, *, fsync_blobs: bool = True) -> Store:
        """Open (creating if needed) and migrate; clean what a crashed writer left behind.

        ``fsync_blobs=False`` skips flushing array files to disk before they are renamed
        into place: still safe against a crashed or killed process (the page cache
        survives), but a power cut could then leave a committed row whose array file is
        empty. It makes mask saves several times faster on slow disks.
        """
        path = expand_user(path).absolute()
        if path.is_dir():
            raise UserError(f"{path} is a folder; give the store's file name (e.g. store.sqlite)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the store folder {path.parent}: {exc}") from exc
        store = cls(path, fsync_blobs=fsync_blobs)
        try:
            migrate(store._db(), path)
        except sqlite3.OperationalError as exc:
            store.close()
            raise UserError(describe_store_error(exc, path)) from exc
        except sqlite3.DatabaseError as exc:
            store.close()
            raise UserError(f"{path} is not a workstation store ({exc})") from exc
        except BaseException:
            store.close()
            raise
        try:
            store.collect_garbage()
        except sqlite3.OperationalError as exc:
            # A read-only store can still be read (export, review); nobody could have
            # left garbage in it. The first write then fails with the boundary's message.
            if not is_read_only_error(exc):
                store.close()
                raise
        except BaseException:
            store.close()
            raise
        return store

    @property
    def path(self) -> Path:
        return self._path

    @property
    def station_id(self) -> str:
        """This store's station id (a uuid made by the migration that added sync): the
        ``station`` of every revision made here, when revisions travel between stations."""
        station = self._station
        if station is None:
            station = self.get_state(STATION_KEY)
            if station is None:
                raise UserError(f"the store {self._path} has no station id; it is damaged")
            self._station = station
        return station

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for db in list(self._connections):
                db.conn.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the store is closed")
                db = connect(self._path)
                self._connections.add(db)
            self._local.db = db
        return db

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(self._db().query(sql, params))

    def _one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    @contextmanager
    def _write(self) -> Iterator[_Writer]:
        """One transaction; files written inside it are undone again if it rolls back."""
        writer = _Writer(self.blobs)
        try:
            with write_transaction(self._db()) as conn:
                writer.conn = conn
                yield writer
        except BaseException:
            writer.undo_files()
            raise

    def collect_garbage(self) -> int:
        """Delete temp files of dead writers and blobs no row references; return the count."""
        removed = self.blobs.remove_stale_temps() + self._remove_stale_model_staging()
        with self._write() as w:
            row = w.conn.execute("SELECT value FROM app_state WHERE key = ?", (_GC_STATE_KEY,))
            found = row.fetchone()
            since = float(found[0]) - _GC_MARGIN_S if found else None
            started = time.time()
            for sha in list(self.blobs.iter_blobs(newer_than=since)):
                referenced = w.conn.execute(
                    "SELECT 1 FROM mask_revisions WHERE blob = ? "
                    "UNION ALL SELECT 1 FROM predictions WHERE map_blob = ? LIMIT 1",
                    (sha, sha),
                ).fetchone()
                if referenced is None:
                    self.blobs.delete(sha)
                    removed += 1
            w.conn.execute(
                "INSERT OR REPLACE INTO app_state (key, value) VALUES (?, ?)",
                (_GC_STATE_KEY, repr(started)),
            )
        return removed

    def _remove_stale_model_staging(self) -> int:
        """Half-written version folders of fits or copies whose process died."""
        removed = 0
        if not self.models_dir.is_dir():
            return 0
        for entry in self.models_dir.iterdir():
            pid_text = entry.name[len(STAGING_PREFIX) :].split("-", 1)[0]
            if entry.name.startswith(STAGING_PREFIX) and not (
                pid_text.isdigit() and pid_alive(int(pid_text))
            ):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed

    def check_integrity(self) -> list[str]:
        """Problems found in the file and the blobs (empty when the store is consistent)."""
        db = self._db()
        problems = [
            f"sqlite: {row[0]}"
            for row in db.execute("PRAGMA integrity_check").fetchall()
            if row[0] != "ok"
        ]
        problems += [
            f"row {row[1]} of {row[0]} points to a missing {row[2]} row"
            for row in db.execute("PRAGMA foreign_key_check").fetchall()
        ]
        referenced = referenced_blobs(db.conn)
        stored = set(self.blobs.iter_blobs())
        problems += [f"blob {sha} is referenced but missing" for sha in referenced - stored]
        problems += [f"blob {sha} is not referenced by any row" for sha in stored - referenced]
        problems += [f"temporary file {p} was left behind" for p in self.blobs.temp_files()]
        return problems

    # ----------------------------------------------------------------- products
    def create_product(
        self,
        name: str,
        *,
        description: str = "",
        normality_rules: Sequence[str] = (),
        defect_vocabulary: Sequence[str] = (),
    ) -> Product:
        name = name.strip()
        if not name:
            raise UserError("a product needs a name")
        if self.find_product(name) is not None:
            raise UserError(f"a product named {name!r} already exists")
        with self._write() as w:
            cursor = w.conn.execute(
                "INSERT INTO products (name, description, normality_rules, defect_vocabulary, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (
                    name,
                    description,
                    json.dumps(list(normality_rules)),
                    json.dumps(list(defect_vocabulary)),
                    _now(),
                ),
            )
            product_id = cursor.lastrowid
        return self.get_product(int(product_id))

    def find_product(self, name: str) -> Product | None:
        row = self._one("SELECT * FROM products WHERE name = ?", (name,))
        return _product(row) if row else None

    def get_product(self, name_or_id: str | int) -> Product:
        if isinstance(name_or_id, int):
            row = self._one("SELECT * FROM products WHERE id = ?", (name_or_id,))
        else:
            row = self._one("SELECT * FROM products WHERE name = ?", (name_or_id,))
        if row is None:
            names = [p.name for p in self.list_products()]
            known = ", ".join(names) if names else "none yet; import a folder first"
            raise UserError(f"no product {name_or_id!r} in {self._path} (products: {known})")
        return _product(row)

    def list_products(self) -> list[Product]:
        return [_product(r) for r in self._query("SELECT * FROM products ORDER BY name")]

    def update_product(
        self,
        product_id: int,
        *,
        description: str = _UNSET,
        normality_rules: Sequence[str] = _UNSET,
        defect_vocabulary: Sequence[str] = _UNSET,
        threshold: float | None = _UNSET,
    ) -> Product:
        changes: dict[str, Any] = {}
        if description is not _UNSET:
            changes["description"] = description
        if normality_rules is not _UNSET:
            changes["normality_rules"] = json.dumps(list(normality_rules))
        if defect_vocabulary is not _UNSET:
            changes["defect_vocabulary"] = json.dumps(list(defect_vocabulary))
        if threshold is not _UNSET:
            changes["threshold"] = None if threshold is None else float(threshold)
        self.get_product(product_id)
        if changes:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            with self._write() as w:
                w.conn.execute(
                    f"UPDATE products SET {assignments} WHERE id = ?",
                    [*changes.values(), product_id],
                )
        return self.get_product(product_id)

    # ------------------------------------------------------------------- images
    def add_image(
        self,
        product_id: int,
        *,
        path: str | Path,
        sha256: str,
        width: int,
        height: int,
        split: Split,
        source_label: str | None,
    ) -> tuple[ImageRecord, bool]:
        """Add an image; idempotent by (product, sha256): the bool says whether it is new."""
        entry = NewImage(str(path), sha256, width, height, split, source_label)
        return self.add_images(product_id, [entry])[0]

    def add_images(
        self, product_id: int, entries: Sequence[NewImage], *, author: str = "import"
    ) -> list[tuple[ImageRecord, bool]]:
        """Add a batch in one transaction, with ground-truth masks for the new images."""
        for entry in entries:
            check_literal(entry.split, Split, "split")
            if entry.width <= 0 or entry.height <= 0:
                raise ValueError(f"image {entry.path} has no pixels")
        results: list[tuple[ImageRecord, bool]] = []
        ground_truth: list[tuple[ImageRecord, NewMaskRevision]] = []
        now = _now()
        with self._write() as w:
            for entry in entries:
                path = os.path.abspath(entry.path)
                cursor = w.conn.execute(
                    "INSERT INTO images (product_id, path, name, sha256, width, height, split, "
                    "source_label, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (product_id, sha256) DO NOTHING",
                    (
                        product_id,
                        path,
                        os.path.basename(path),
                        entry.sha256,
                        entry.width,
                        entry.height,
                        entry.split,
                        entry.source_label,
                        now,
                    ),
                )
                created = cursor.rowcount == 1
                row = w.conn.execute(
                    f"SELECT {_IMAGE_COLUMNS} FROM images WHERE product_id = ? AND sha256 = ?",
                    (product_id, entry.sha256),
                ).fetchone()
                record = _image(row)
                queued = {r.id for r, _ in ground_truth}  # a duplicate file in this batch
                if (
                    entry.ground_truth_mask is not None
                    and record.id not in queued
                    and (created or not self._has_source(w.conn, record.id, "ground_truth"))
                ):
                    truth = NewMaskRevision(
                        record.id, entry.ground_truth_mask, "ground_truth", author
                    )
                    ground_truth.append((record, truth))
                results.append((record, created))
            w.add_masks(ground_truth, created_at=now)
        return results

    def update_image_path(self, image_id: int, path: str | Path) -> ImageRecord:
        """Point an image at its new location (same content, moved folder)."""
        absolute = os.path.abspath(path)
        with self._write() as w:
            w.conn.execute(
                "UPDATE images SET path = ?, name = ? WHERE id = ?",
                (absolute, os.path.basename(absolute), image_id),
            )
        return self.get_image(image_id)

    @staticmethod
    def _has_source(conn: sqlite3.Connection, image_id: int, source: str) -> bool:
        found = conn.execute(
            "SELECT 1 FROM mask_revisions WHERE image_id = ? AND source = ? LIMIT 1",
            (image_id, source),
        ).fetchone()
        return found is not None

    def get_image(self, image_id: int) -> ImageRecord:
        row = (
            self._db()
            .execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,))
            .fetchone()
        )
        if row is None:
            raise UserError(f"no image with id {image_id} in {self._path}")
        return _image(row)

    def find_image(self, product_id: int, sha256: str) -> ImageRecord | None:
        row = (
            self._db()
            .execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE product_id = ? AND sha256 = ?",
                (product_id, sha256),
            )
            .fetchone()
        )
        return _image(row) if row else None

    def list_images(
        self, product_id: int, *, split: Split | None = None, source_label: str | None = None
    ) -> list[ImageRecord]:
        sql = f"SELECT {_IMAGE_COLUMNS} FROM images WHERE product_id = ?"
        params: list[Any] = [product_id]
        if split is not None:
            sql += " AND split = ?"
            params.append(split)
        if source_label is not None:
            sql += " AND source_label = ?"
            params.append(source_label)
        rows = self._db().execute(sql + " ORDER BY id", params).fetchall()
        return [_image(r) for r in rows]

    def split_label_counts(self, product_id: int) -> dict[tuple[str, str | None], int]:
        rows = (
            self._db()
            .execute(
                "SELECT split, source_label, COUNT(*) FROM images WHERE product_id = ? "
                "GROUP BY split, source_label ORDER BY split, source_label",
                (product_id,),
            )
            .fetchall()
        )
        return {(r[0], r[1]): r[2] for r in rows}

    @staticmethod
    def _filters(
        product_id: int,
        *,
        review_state: ReviewState | None,
        predicted_anomalous: bool | None,
        score_min: float | None,
        score_max: float | None,
        defect_type: str | None,
        conflict: bool | None = None,
    ) -> tuple[str, list[Any]]:
        where = ["product_id = ?"]
        params: list[Any] = [product_id]
        if review_state is not None:
            check_literal(review_state, ReviewState, "review_state")
            where.append("reviewed = ?")
            params.append(1 if review_state == "reviewed" else 0)
        if predicted_anomalous is not None:
            where.append("latest_anomalous = ?")
            params.append(int(predicted_anomalous))
        if score_min is not None:
            where.append("latest_score >= ?")
            params.append(float(score_min))
        if score_max is not None:
            where.append("latest_score <= ?")
            params.append(float(score_max))
        if defect_type is not None:
            where.append("latest_defect_type = ?")
            params.append(defect_type)
        if conflict is not None:
            where.append("sync_conflict = ?")
            params.append(int(conflict))
        return " AND ".join(where), params

    def query_images(
        self,
        product_id: int,
        *,
        review_state: ReviewState | None = None,
        predicted_anomalous: bool | None = None,
        score_min: float | None = None,
        score_max: float | None = None,
        defect_type: str | None = None,
        conflict: bool | None = None,
        order_by: ImageOrder = "priority",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ImageRow]:
        """The review queue, filtered and sorted in SQL.

        ``reviewed`` means the image has at least one decisive review (accepted, normal or
        anomalous); a skip alone leaves it unreviewed. Scores and verdicts come from the
        newest prediction of any model version; ``priority`` is the active-learning order
        (highest first, images without one last). ``conflict`` keeps (True) or drops
        (False) the images whose stations' verdicts disagree (``store.current``).
        """
        check_literal(order_by, ImageOrder, "order_by")
        where, params = self._filters(
            product_id,
            review_state=review_state,
            predicted_anomalous=predicted_anomalous,
            score_min=score_min,
            score_max=score_max,
            defect_type=defect_type,
            conflict=conflict,
        )
        sql = f"SELECT {_ROW_COLUMNS} FROM images WHERE {where} ORDER BY {_ORDERS[order_by]}"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else int(limit), int(offset)]
        rows = self._db().execute(sql, params).fetchall()
        return [
            ImageRow(
                image=_image(r),
                score=r[9],
                anomalous=None if r[10] is None else bool(r[10]),
                review_verdict=r[11],
                defect_type=r[12],
                priority=r[13],
                priority_reason=r[14],
                conflict=bool(r[15]),
            )
            for r in rows
        ]

    def count_images(
        self,
        product_id: int,
        *,
        review_state: ReviewState | None = None,
        predicted_anomalous: bool | None = None,
        score_min: float | None = None,
        score_max: float | None = None,
        defect_type: str | None = None,
        conflict: bool | None = None,
    ) -> int:
        where, params = self._filters(
            product_id,
            review_state=review_state,
            predicted_anomalous=predicted_anomalous,
            score_min=score_min,
            score_max=score_max,
            defect_type=defect_type,
            conflict=conflict,
        )
        return int(
            self._db().execute(f"SELECT COUNT(*) FROM images WHERE {where}", params).fetchone()[0]
        )

    # -------------------------------------------------------------------- masks
    def add_mask_revision(
        self,
        image_id: int,
        mask: np.ndarray,
        *,
        source: str,
        author: str,
        parent_id: int | None = None,
        model_version: str | None = None,
    ) -> MaskRevision:
        """Append a mask revision (any nonzero pixel is defect); the mask must be image-sized."""
        entry = NewMaskRevision(image_id, mask, source, author, parent_id, model_version)
        return self.add_mask_revisions([entry])[0]

    def add_mask_revisions(self, entries: Sequence[NewMaskRevision]) -> list[MaskRevision]:
        """Append several mask revisions in one transaction (model outputs for a folder)."""
        for entry in entries:
            check_revision_source(entry.source)
        records = {i: self.get_image(i) for i in {e.image_id for e in entries}}
        with self._write() as w:
            return w.add_masks([(records[e.image_id], e) for e in entries], created_at=_now())

    def latest_mask_revision(
        self, image_id: int, *, sources: tuple[str, ...] | None = None
    ) -> MaskRevision | None:
        extra, params = _source_filter(sources)
        row = self._one(
            f"SELECT * FROM mask_revisions WHERE image_id = ?{extra} "
            f"ORDER BY {NEWEST_FIRST} LIMIT 1",
            [image_id, *params, self.station_id],
        )
        return _mask_revision(row) if row else None

    def mask_history(self, image_id: int) -> list[MaskRevision]:
        rows = self._query(
            "SELECT * FROM mask_revisions WHERE image_id = ? ORDER BY id", [image_id]
        )
        return [_mask_revision(r) for r in rows]

    def load_mask(self, revision_or_blob: MaskRevision | str) -> np.ndarray:
        sha = revision_or_blob if isinstance(revision_or_blob, str) else revision_or_blob.blob
        return as_binary_mask(self.blobs.get_array(sha))

    # ------------------------------------------------------------- explanations
    def add_explanation(
        self,
        image_id: int,
        explanation: Explanation,
        *,
        source: str,
        author: str,
        parent_id: int | None = None,
        model_version: str | None = None,
    ) -> ExplanationRevision:
        check_revision_source(source)
        station = self.station_id
        with self._write() as w:
            cursor = w.conn.execute(
                "INSERT INTO explanation_revisions (image_id, source, author, created_at, "
                "parent_id, model_version, verdict, defect_type, location, severity, "
                "description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    image_id,
                    source,
                    author,
                    _now(),
                    parent_id,
                    model_version,
                    explanation.verdict,
                    explanation.defect_type,
                    explanation.location,
                    explanation.severity,
                    explanation.description,
                ),
            )
            revision_id = cursor.lastrowid
            refresh_current(w.conn, [image_id], station)
        row = self._one("SELECT * FROM explanation_revisions WHERE id = ?", (revision_id,))
        assert row is not None
        return _explanation_revision(row)

    def latest_explanation(
        self, image_id: int, *, sources: tuple[str, ...] | None = None
    ) -> ExplanationRevision | None:
        extra, params = _source_filter(sources)
        row = self._one(
            f"SELECT * FROM explanation_revisions WHERE image_id = ?{extra} "
            f"ORDER BY {NEWEST_FIRST} LIMIT 1",
            [image_id, *params, self.station_id],
        )
        return _explanation_revision(row) if row else None

    def explanation_history(self, image_id: int) -> list[ExplanationRevision]:
        rows = self._query(
            "SELECT * FROM explanation_revisions WHERE image_id = ? ORDER BY id", [image_id]
        )
        return [_explanation_revision(r) for r in rows]

    # ------------------------------------------------------------------ reviews
    def add_review(
        self,
        image_id: int,
        verdict: ReviewVerdict,
        *,
        reviewer: str,
        reason: str = "",
        model_version: str | None = None,
    ) -> Review:
        check_literal(verdict, ReviewVerdict, "review verdict")
        station = self.station_id
        with self._write() as w:
            # What the inspector had in front of them: other stations' verdicts that this
            # review overrides knowingly (a review that saw them ends a sync conflict).
            seen = seen_keys(w.conn, image_id)
            cursor = w.conn.execute(
                "INSERT INTO reviews (image_id, verdict, reason, reviewer, created_at, "
                "model_version, seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    image_id,
                    verdict,
                    reason,
                    reviewer,
                    _now(),
                    model_version,
                    json.dumps(seen) if seen else None,
                ),
            )
            review_id = cursor.lastrowid
            refresh_current(w.conn, [image_id], station)
        row = self._one("SELECT * FROM reviews WHERE id = ?", (review_id,))
        assert row is not None
        return _review(row)

    def latest_review(self, image_id: int) -> Review | None:
        row = self._one(
            f"SELECT * FROM reviews WHERE image_id = ? ORDER BY {NEWEST_FIRST} LIMIT 1",
            (image_id, self.station_id),
        )
        return _review(row) if row else None

    def review_history(self, image_id: int) -> list[Review]:
        rows = self._query("SELECT * FROM reviews WHERE image_id = ? ORDER BY id", (image_id,))
        return [_review(r) for r in rows]

    def list_reviews(self, product_id: int) -> list[Review]:
        rows = self._query(
            "SELECT r.* FROM reviews r JOIN images i ON i.id = r.image_id "
            "WHERE i.product_id = ? ORDER BY r.id",
            (product_id,),
        )
        return [_review(r) for r in rows]

    # -------------------------------------------------------------- predictions
    def add_prediction(
        self,
        image_id: int,
        *,
        model_version: str,
        score: float,
        anomalous: bool,
        anomaly_map: np.ndarray | None,
    ) -> Prediction:
        """Record (or replace) this model version's prediction for the image."""
        entry = NewPrediction(image_id, model_version, score, anomalous, anomaly_map)
        return self.add_predictions([entry])[0]

    def add_predictions(self, entries: Sequence[NewPrediction]) -> list[Prediction]:
        """A batch of predictions in one transaction (one per image and model version)."""
        maps: list[np.ndarray] = []
        for entry in entries:
            if entry.anomaly_map is not None:
                array = np.asarray(entry.anomaly_map)
                if array.ndim != 2:
                    raise ValueError(f"an anomaly map must be 2-D, got {array.shape}")
                if array.dtype not in (np.float16, np.float32):
                    array = array.astype(np.float32)
                maps.append(array)
        # checked before the transaction, so a bad entry writes nothing at all
        extras = [
            (_expert_scores_json(e.expert_scores), _embedding_bytes(e.embedding)) for e in entries
        ]
        ids: list[int] = []
        with self._write() as w:
            shas = iter(w.put_blobs(maps))
            for entry, (expert_scores, embedding) in zip(entries, extras, strict=True):
                blob = None if entry.anomaly_map is None else next(shas)
                now = _now()
                w.conn.execute(
                    "INSERT INTO predictions (image_id, model_version, score, anomalous, "
                    "map_blob, created_at, expert_scores, embedding) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (image_id, model_version) DO UPDATE SET score = excluded.score, "
                    "anomalous = excluded.anomalous, map_blob = excluded.map_blob, "
                    "created_at = excluded.created_at, expert_scores = excluded.expert_scores, "
                    "embedding = excluded.embedding",
                    (
                        entry.image_id,
                        entry.model_version,
                        float(entry.score),
                        int(bool(entry.anomalous)),
                        blob,
                        now,
                        expert_scores,
                        embedding,
                    ),
                )
                found = w.conn.execute(
                    "SELECT id FROM predictions WHERE image_id = ? AND model_version = ?",
                    (entry.image_id, entry.model_version),
                ).fetchone()
                ids.append(found[0])
                w.conn.execute(
                    "UPDATE images SET latest_score = ?, latest_anomalous = ? WHERE id = ?",
                    (float(entry.score), int(bool(entry.anomalous)), entry.image_id),
                )
        rows = {r["id"]: r for r in self._rows_by_ids("predictions", ids)}
        return [_prediction(rows[i]) for i in ids]

    def _rows_by_ids(self, table: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            found += self._query(f"SELECT * FROM {table} WHERE id IN ({marks})", chunk)
        return found

    def latest_prediction(
        self, image_id: int, *, model_version: str | None = None
    ) -> Prediction | None:
        sql = "SELECT * FROM predictions WHERE image_id = ?"
        params: list[Any] = [image_id]
        if model_version is not None:
            sql += " AND model_version = ?"
            params.append(model_version)
        row = self._one(sql + " ORDER BY created_at DESC, id DESC LIMIT 1", params)
        return _prediction(row) if row else None

    def predicted_image_ids(self, product_id: int, model_version: str) -> set[int]:
        rows = (
            self._db()
            .execute(
                "SELECT p.image_id FROM predictions p JOIN images i ON i.id = p.image_id "
                "WHERE p.model_version = ? AND i.product_id = ?",
                (model_version, product_id),
            )
            .fetchall()
        )
        return {r[0] for r in rows}

    def load_map(self, prediction: Prediction) -> np.ndarray:
        if prediction.map_blob is None:
            raise UserError(f"prediction {prediction.id} was saved without an anomaly map")
        return self.blobs.get_array(prediction.map_blob).astype(np.float32, copy=False)

    # ------------------------------------------------------------------- models
    def add_model_version(
        self,
        product_id: int,
        *,
        kind: ModelKind,
        state: ModelState,
        name: str | None = None,
        parent_id: int | None = None,
        round_id: int | None = None,
        files: Path | None = None,
        metrics: Mapping[str, float] | None = None,
        config: Mapping[str, object] | None = None,
    ) -> ModelVersion:
        """Register a version; ``files`` (a folder) is moved into :attr:`models_dir`.

        Any kind registers its files this way, so every version's folder belongs to this
        store and carries the content hash that :meth:`model_files` checks on load.
        ``name`` defaults to ``<kind>-N``, N counting the kind across the whole store,
        chosen under the write lock so concurrent registrations never share a folder.
        """
        check_literal(kind, ModelKind, "model kind")
        check_literal(state, ModelState, "model state")
        if name is not None and not _SAFE_NAME.match(name):
            raise UserError(f"a model version name may hold letters, digits, . _ - only: {name!r}")
        digest = None if files is None else folder_sha256(files)  # outside the write lock
        with self._write() as w:
            if name is None:
                name = self._next_version_name(w.conn, kind)
            taken = w.conn.execute("SELECT 1 FROM model_versions WHERE name = ?", (name,))
            if taken.fetchone() is not None:
                raise UserError(f"a model version named {name!r} already exists")
            if files is not None:
                w.move_folder(files, self.models_dir / name)
            if state == "active":
                self._retire_active(w.conn, product_id, kind)
            cursor = w.conn.execute(
                "INSERT INTO model_versions (product_id, name, kind, state, parent_id, round_id, "
                "path, metrics, config, created_at, files_sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    product_id,
                    name,
                    kind,
                    state,
                    parent_id,
                    round_id,
                    None if files is None else name,
                    json.dumps(dict(metrics or {})),
                    json.dumps(dict(config or {})),
                    _now(),
                    digest,
                ),
            )
            version_id = cursor.lastrowid
        return self.get_model_version(int(version_id))

    @staticmethod
    def _next_version_name(conn: sqlite3.Connection, kind: str) -> str:
        highest = 0
        for (name,) in conn.execute("SELECT name FROM model_versions WHERE kind = ?", (kind,)):
            match = re.fullmatch(rf"{re.escape(kind)}-(\d+)", name)
            if match:
                highest = max(highest, int(match.group(1)))
        return f"{kind}-{highest + 1}"

    @property
    def models_dir(self) -> Path:
        """``<name>.models/`` beside the store file: every version folder of this store."""
        return store_models_dir(self._path)

    def new_model_folder(self) -> Path:
        """An empty folder to write a version into before :meth:`add_model_version`."""
        return staging_folder(self.models_dir)

    def model_files_problem(self, version: ModelVersion) -> FilesProblem | None:
        """Why the version's folder cannot be used (None: it hashes as registered)."""
        folder = None if version.path is None else Path(version.path)
        state = files_state(folder, version.files_sha256)
        if state == "ok":
            return None
        product = self.get_product(version.product_id).name
        return FilesProblem(version.name, state, folder, fix_for(version.kind, product))

    def model_files(self, version: ModelVersion) -> Path:
        """The version's folder, after checking it still holds what was registered.

        Raises :class:`ModelFilesError` (one line with the fix) when the folder is
        missing, changed, or was never hashed; a model is never used unchecked.
        """
        problem = self.model_files_problem(version)
        if problem is not None:
            raise ModelFilesError(problem.message)
        assert version.path is not None
        return Path(version.path)

    @contextmanager
    def fit_lock(
        self, product_id: int, kind: ModelKind, *, cancel: threading.Event | None = None
    ) -> Iterator[None]:
        """Hold the right to fit ``kind`` for the product; other processes wait here.

        A lock row, not a transaction: a fit takes minutes and must not block every other
        writer. A row left by a process that died (same host, pid gone) or older than
        :data:`FIT_LOCK_STALE_S` is taken over.
        """
        holder = uuid.uuid4().hex
        host = socket.gethostname()
        while not self._take_fit_lock(product_id, kind, holder, host):
            if cancel is not None and cancel.is_set():
                raise CancelledError("cancelled while waiting for another fit")
            time.sleep(_FIT_LOCK_POLL_S)
        try:
            yield
        finally:
            with self._write() as w:
                w.conn.execute("DELETE FROM fit_locks WHERE holder = ?", (holder,))

    def _take_fit_lock(self, product_id: int, kind: str, holder: str, host: str) -> bool:
        with self._write() as w:
            row = w.conn.execute(
                "SELECT pid, host, started_at FROM fit_locks WHERE product_id = ? AND kind = ?",
                (product_id, kind),
            ).fetchone()
            if row is not None:
                pid, owner_host, started = row
                dead = owner_host == host and not pid_alive(pid)
                if not dead and time.time() - started < FIT_LOCK_STALE_S:
                    return False
            w.conn.execute(
                "INSERT OR REPLACE INTO fit_locks (product_id, kind, holder, pid, host, "
                "started_at) VALUES (?, ?, ?, ?, ?, ?)",
                (product_id, kind, holder, os.getpid(), host, time.time()),
            )
        return True

    @staticmethod
    def _retire_active(conn: sqlite3.Connection, product_id: int, kind: str) -> None:
        conn.execute(
            "UPDATE model_versions SET state = 'retired' "
            "WHERE product_id = ? AND kind = ? AND state = 'active'",
            (product_id, kind),
        )

    def get_model_version(self, id_or_name: int | str) -> ModelVersion:
        column = "id" if isinstance(id_or_name, int) else "name"
        row = self._one(f"SELECT * FROM model_versions WHERE {column} = ?", (id_or_name,))
        if row is None:
            raise UserError(f"no model version {id_or_name!r} in {self._path}")
        return _model_version(row, self.models_dir)

    def list_model_versions(
        self, product_id: int, *, kind: ModelKind | None = None
    ) -> list[ModelVersion]:
        sql = "SELECT * FROM model_versions WHERE product_id = ?"
        params: list[Any] = [product_id]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        rows = self._query(sql + " ORDER BY id", params)
        return [_model_version(r, self.models_dir) for r in rows]

    def active_model_version(self, product_id: int, kind: ModelKind) -> ModelVersion | None:
        row = self._one(
            "SELECT * FROM model_versions WHERE product_id = ? AND kind = ? AND state = 'active' "
            "ORDER BY id DESC LIMIT 1",
            (product_id, kind),
        )
        return _model_version(row, self.models_dir) if row else None

    def set_model_state(self, version_id: int, state: ModelState) -> ModelVersion:
        """Change a version's state; making one active retires the previous active one."""
        check_literal(state, ModelState, "model state")
        version = self.get_model_version(version_id)
        with self._write() as w:
            if state == "active":
                self._retire_active(w.conn, version.product_id, version.kind)
            w.conn.execute("UPDATE model_versions SET state = ? WHERE id = ?", (state, version_id))
        return self.get_model_version(version_id)

    # ------------------------------------------------------------------- rounds
    def add_round(self, product_id: int, *, kind: ModelKind, manifest_path: str | Path) -> Round:
        check_literal(kind, ModelKind, "round kind")
        with self._write() as w:
            cursor = w.conn.execute(
                "INSERT INTO rounds (product_id, kind, status, manifest_path, started_at, "
                "message) VALUES (?, ?, 'pending', ?, ?, '')",
                (product_id, kind, str(manifest_path), _now()),
            )
            round_id = cursor.lastrowid
        return self.get_round(int(round_id))

    def get_round(self, round_id: int) -> Round:
        row = self._one("SELECT * FROM rounds WHERE id = ?", (round_id,))
        if row is None:
            raise UserError(f"no training round {round_id} in {self._path}")
        return _round(row)

    def update_round(
        self,
        round_id: int,
        *,
        status: RoundStatus,
        finished_at: str | None = None,
        result_version_id: int | None = None,
        message: str = "",
    ) -> Round:
        """Record a round's progress; finished states get ``finished_at`` (now by default)."""
        check_literal(status, RoundStatus, "round status")
        if finished_at is None and status in ("succeeded", "failed", "cancelled"):
            finished_at = _now()
        with self._write() as w:
            w.conn.execute(
                "UPDATE rounds SET status = ?, finished_at = ?, "
                "result_version_id = COALESCE(?, result_version_id), message = ? WHERE id = ?",
                (status, finished_at, result_version_id, message, round_id),
            )
        return self.get_round(round_id)

    def list_rounds(self, product_id: int) -> list[Round]:
        rows = self._query("SELECT * FROM rounds WHERE product_id = ? ORDER BY id", (product_id,))
        return [_round(r) for r in rows]

    # ------------------------------------------------------------ active queue
    def set_priorities(
        self,
        product_id: int,
        priorities: Mapping[int, float],
        reasons: Mapping[int, str] | None = None,
    ) -> None:
        """Replace the product's whole queue order (higher priority is reviewed first) and
        the reason each image is where it is (shown in the review list)."""
        reasons = reasons or {}
        items = [(int(k), float(v), reasons.get(k)) for k, v in priorities.items()]
        with self._write() as w:
            w.conn.execute("DELETE FROM queue_priorities WHERE product_id = ?", (product_id,))
            w.conn.execute(
                "UPDATE images SET priority = NULL, priority_reason = NULL "
                "WHERE product_id = ? AND priority IS NOT NULL",
                (product_id,),
            )
            before = w.conn.total_changes
            w.conn.executemany(
                "UPDATE images SET priority = ?, priority_reason = ? "
                "WHERE id = ? AND product_id = ?",
                [(p, r, i, product_id) for i, p, r in items],
            )
            if w.conn.total_changes - before != len(items):
                raise ValueError("set_priorities got image ids that are not in this product")
            w.conn.executemany(
                "INSERT INTO queue_priorities (image_id, product_id, priority, reason) "
                "VALUES (?, ?, ?, ?)",
                [(i, product_id, p, r) for i, p, r in items],
            )

    def get_priorities(self, product_id: int) -> dict[int, float]:
        rows = (
            self._db()
            .execute(
                "SELECT image_id, priority FROM queue_priorities WHERE product_id = ?",
                (product_id,),
            )
            .fetchall()
        )
        return {r[0]: r[1] for r in rows}

    # ---------------------------------------------------------------- app state
    def get_state(self, key: str, default: str | None = None) -> str | None:
        row = self._db().execute("SELECT value FROM app_state WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_state(self, key: str, value: str) -> None:
        with self._write() as w:
            w.conn.execute(
                "INSERT OR REPLACE INTO app_state (key, value) VALUES (?, ?)", (key, str(value))
            )


class _Writer:
    """The open transaction of one write call, and the files it created or moved."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.conn: sqlite3.Connection
        self._created: list[Path] = []
        self._moved: list[tuple[Path, Path]] = []

    def put_blobs(self, arrays: Iterable[np.ndarray]) -> list[str]:
        results = self.blobs.put_arrays_tracked(arrays)
        self._created += [created for _, created in results if created is not None]
        return [sha for sha, _ in results]

    def track_created(self, path: Path) -> None:
        """A file this write made outside the blob store, deleted again on rollback."""
        self._created.append(path)

    def move_folder(self, source: Path, target: Path) -> None:
        move_into_place(source, target)
        self._moved.append((source, target))

    def undo_files(self) -> None:
        """After a rollback: delete new blobs, give moved folders back to their caller."""
        # Safe: we held the write lock, so no other writer can have referenced these yet.
        for path in self._created:
            path.unlink(missing_ok=True)
        for source, target in reversed(self._moved):
            if target.exists() and not source.exists():
                move_into_place(target, source)

    def add_masks(
        self, items: Sequence[tuple[ImageRecord, NewMaskRevision]], *, created_at: str
    ) -> list[MaskRevision]:
        """Validate, store the blobs (flushed together), then insert one row per mask."""
        binaries = []
        for record, item in items:
            binary = as_binary_mask(item.mask)
            if binary.shape != (record.height, record.width):
                raise UserError(
                    f"the mask is {binary.shape[1]}x{binary.shape[0]} pixels but image "
                    f"{record.name} is {record.width}x{record.height}"
                )
            binaries.append(binary)
        revisions = []
        for (record, item), sha in zip(items, self.put_blobs(binaries), strict=True):
            cursor = self.conn.execute(
                "INSERT INTO mask_revisions (image_id, source, author, created_at, parent_id, "
                "model_version, blob) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    item.source,
                    item.author,
                    created_at,
                    item.parent_id,
                    item.model_version,
                    sha,
                ),
            )
            revisions.append(
                MaskRevision(
                    id=int(cursor.lastrowid or 0),
                    image_id=record.id,
                    blob=sha,
                    source=item.source,
                    author=item.author,
                    created_at=created_at,
                    parent_id=item.parent_id,
                    model_version=item.model_version,
                )
            )
        return revisions
