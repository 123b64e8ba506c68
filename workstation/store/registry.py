"""The model registry: model versions (with their files in the store), fit locks, rounds.

A version's folder is moved into ``<store>.models/`` inside the write that registers it,
so a row and its files appear together; a fit lock is a row, not a transaction, since
a fit takes minutes and must not block every other writer.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workstation.core import kinds
from workstation.core.errors import CancelledError, UserError
from workstation.core.tempfiles import pid_alive
from workstation.core.types import (
    ModelKind,
    ModelState,
    ModelVersion,
    Round,
    RoundStatus,
    check_literal,
)
from workstation.store.base import timestamp
from workstation.store.model_files import (
    FilesProblem,
    ModelFilesError,
    files_state,
    fix_for,
    folder_sha256,
    resolve_model_path,
    staging_folder,
)
from workstation.store.products import ProductsMixin
from workstation.store.rows import from_row

FIT_LOCK_STALE_S = 6 * 3600.0
"""A fit lock older than this is taken over even if its process seems alive (pid reuse,
another machine on a shared folder): no fit of a few hundred normals takes that long."""
_FIT_LOCK_POLL_S = 0.25
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")


def _model_version(row: Mapping[str, Any], models_dir: Path) -> ModelVersion:
    path = row["path"]
    if path is not None:
        path = str(resolve_model_path(path, models_dir))
    return from_row(
        ModelVersion,
        row,
        path=path,
        metrics=json.loads(row["metrics"]),
        config=json.loads(row["config"]),
    )


def _round(row: Mapping[str, Any]) -> Round:
    return from_row(Round, row)


class RegistryMixin(ProductsMixin):
    """Model versions, fit locks and training rounds of the store's products."""

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
        kinds.check_model_kind(kind)
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
                    timestamp(),
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

    def add_round(self, product_id: int, *, kind: ModelKind, manifest_path: str | Path) -> Round:
        kinds.check_model_kind(kind, "round kind")
        with self._write() as w:
            cursor = w.conn.execute(
                "INSERT INTO rounds (product_id, kind, status, manifest_path, started_at, "
                "message) VALUES (?, ?, 'pending', ?, ?, '')",
                (product_id, kind, str(manifest_path), timestamp()),
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
            finished_at = timestamp()
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
