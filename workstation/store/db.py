"""Opening the SQLite file: WAL, foreign keys, busy timeout, and migrations by user_version.

Every connection runs in autocommit mode; writes go through :func:`write_transaction`, which
takes the write lock up front (``BEGIN IMMEDIATE``). Taking it up front matters: a deferred
transaction that reads first and upgrades to a write later can fail with "database is locked"
immediately, without the busy handler ever waiting. With the lock taken first, SQLite's own
busy timeout queues writers, and a short retry loop covers the rest, so two writers (the GUI
thread and a worker) never show that error to a person.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import sqlite_utils

from workstation.core.errors import SchemaTooNewError, UserError
from workstation.store.schema import MIGRATIONS

SCHEMA_VERSION = len(MIGRATIONS)
BUSY_TIMEOUT_MS = 10_000
T = TypeVar("T")
RETRY_DEADLINE_S = 60.0
"""How long a writer keeps retrying a locked database before telling the user."""


def connect(path: Path) -> sqlite_utils.Database:
    """One configured connection (call once per thread)."""
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
    if str(mode).lower() != "wal":
        raise UserError(f"the store {path} cannot use write-ahead logging (journal mode {mode})")
    # NORMAL is durable across process crashes in WAL mode; only a power cut can lose the
    # last commits, never corrupt the file.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return sqlite_utils.Database(conn)


def is_locked_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def is_read_only_error(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc).lower()


def _retry_locked(action: Callable[[], T]) -> T:
    deadline = time.monotonic() + RETRY_DEADLINE_S
    delay = 0.01
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not is_locked_error(exc) or time.monotonic() > deadline:
                if is_locked_error(exc):
                    raise UserError(
                        "the store stayed busy for a minute (another program holds it?); "
                        "close other copies of the workstation and retry"
                    ) from exc
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.5)


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolls back on any error, retries a locked begin."""
    conn = db.conn
    _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
    try:
        yield conn
        _retry_locked(lambda: conn.execute("COMMIT"))
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (disk full, I/O)
            conn.execute("ROLLBACK")
        raise


def migrate(db: sqlite_utils.Database, path: Path) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`; refuse a store from a newer program."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the store {path} has schema version {version}, but this program only knows "
            f"versions up to {SCHEMA_VERSION}; update iad-workstation to open it"
        )
    if version == SCHEMA_VERSION:
        return
    with write_transaction(db):
        # Re-read under the write lock: another process may have migrated meanwhile.
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        for number in range(version, SCHEMA_VERSION):
            MIGRATIONS[number](db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def read_schema_version(path: Path) -> int:
    """The store's ``user_version`` read without creating, locking or migrating anything.

    For health checks (``iad-workstation doctor``) that must only look: the file is opened
    read-only, so a store from a newer program is reported, not touched.
    """
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path} is not a readable IAD Workstation store: {exc}") from None
