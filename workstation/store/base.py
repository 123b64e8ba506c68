"""The shared core of :class:`~workstation.store.repository.Store`: connections and writes.

One SQLite connection per thread (WAL lets the GUI thread read while a worker writes); the
store object itself is safe to share. Each public write is one ``BEGIN IMMEDIATE``
transaction (:meth:`StoreBase._write`), so a crash loses at most the call in flight and
never leaves half of it; files written inside it are undone again if it rolls back.
The mixins of the other modules of this package build on this class.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import numpy as np
import sqlite_utils

from workstation.core.errors import UserError
from workstation.core.types import ImageRecord, MaskRevision
from workstation.store.blobs import BlobStore, store_blobs_dir
from workstation.store.db import connect, write_transaction
from workstation.store.model_files import move_into_place, store_models_dir
from workstation.store.rows import NewMaskRevision

STATION_KEY = "station.id"


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


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


class StoreBase:
    """One store file: its per-thread connections, blobs, write transactions and app state."""

    def __init__(self, path: Path, *, fsync_blobs: bool = True) -> None:
        self._path = path
        self._local = threading.local()
        # Weak: a thread that ends drops its connection (closed when collected).
        self._connections: weakref.WeakSet[sqlite_utils.Database] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        self._station: str | None = None
        self.blobs = BlobStore(store_blobs_dir(path), fsync=fsync_blobs)

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

    def __enter__(self) -> Self:
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

    @property
    def models_dir(self) -> Path:
        """``<name>.models/`` beside the store file: every version folder of this store."""
        return store_models_dir(self._path)

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
