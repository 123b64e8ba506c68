"""What an SQLite error means for the person using the store, in one line with the fix.

SQLite's messages ("attempt to write a readonly database", "database disk image is
malformed") name neither the file nor the remedy; the error boundary (``faults``) adds
both through :func:`describe_store_error`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SQLITE_READ_ERRORS = (sqlite3.DatabaseError, UnicodeDecodeError)
"""What reading a damaged store raises: SQLite's message about a damaged schema quotes
the damaged bytes, and when those are not UTF-8 Python fails decoding the message and
raises UnicodeDecodeError instead of the DatabaseError it stands for."""


def as_database_error(exc: BaseException) -> sqlite3.DatabaseError | None:
    """The SQLite error ``exc`` is or stands for (see :data:`SQLITE_READ_ERRORS`)."""
    if isinstance(exc, sqlite3.DatabaseError):
        return exc
    if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, bytes | bytearray):
        message = bytes(exc.object)
        if message.startswith((b"malformed database schema", b"database disk image")):
            return sqlite3.DatabaseError(message.decode("utf-8", "replace"))
    return None


def describe_store_error(exc: BaseException, store: Path | None) -> str | None:
    """One line (what, which store, what to do) for an SQLite error; None for others."""
    found = as_database_error(exc)
    if found is None:
        return None
    exc = found
    code = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc)
    low = text.lower()
    where = f"the store {store}" if store else "the store"
    doctor = f"iad-workstation doctor --db {store}" if store else "iad-workstation doctor"
    if code.startswith("SQLITE_READONLY") or "readonly" in low:
        return (
            f"{where} is read-only ({text}); make the file and its folder writable, "
            "or copy the store to a writable place and pass --db"
        )
    if code.startswith("SQLITE_FULL") or "disk is full" in low:
        return (
            f"the disk holding {where} is full ({text}); free some space and retry "
            "(the interrupted write was rolled back, nothing is half-written)"
        )
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in low:
        return (
            f"{where} stayed locked by another program ({text}); close other copies of "
            "iad-workstation and retry"
        )
    if code.startswith("SQLITE_CANTOPEN") or "unable to open" in low:
        return f"cannot open {where} ({text}); check that its folder exists and is writable"
    repair = (
        f"iad-workstation repair --db {store} NEW.sqlite" if store else "iad-workstation repair"
    )
    if isinstance(exc, sqlite3.OperationalError) and not code.startswith("SQLITE_IOERR"):
        return f"{where} failed ({text}); run `{doctor}` to see what is wrong"
    return (
        f"{where} is damaged ({text}); run `{doctor}` to see the damage, then "
        f"`{repair}` to salvage what is readable into a new store (the original is kept)"
    )
