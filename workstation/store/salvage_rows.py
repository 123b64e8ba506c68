"""Reading rows out of a damaged SQLite file (for ``store.salvage``).

Four ways, each for what the one before cannot reach: the schema is mended in the
working copy (entries whose text no longer parses); rows are read in rowid order
forwards and backwards up to the damage, then one rowid at a time across it; rows
whose table page is lost are rebuilt from the table's indexes (each index entry holds
its columns and the rowid, often on pages that survived); and ``sqlite3 .recover``,
where it works, fills in the rest (in ``store.salvage``).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from workstation.store.errors import SQLITE_READ_ERRORS

OPEN_END_PROBES = 1000
"""Rowids tried past the damage when the end of a table cannot be read either."""
Row = tuple[object, ...]


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lenient(copy: Path) -> sqlite3.Connection:
    """A reading connection that survives damage: the schema is not re-checked, and a
    text value whose bytes are not UTF-8 is kept with replacement characters."""
    conn = sqlite3.connect(copy)
    conn.text_factory = lambda data: data.decode("utf-8", "replace")
    conn.execute("PRAGMA writable_schema = ON")
    return conn


def mend_schema(copy: Path, out: sqlite3.Connection) -> int:
    """Make the working copy's schema readable; return how many entries were changed.

    An entry whose text is no longer UTF-8 or no longer parses makes SQLite refuse the
    whole file: a table's gets the text of the same table in the new store (so its
    intact pages read again), any other (an index, a trigger) is dropped, since rows
    are read in rowid order and the new store builds its own indexes.
    """
    good = dict(out.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    mended = 0
    with closing(sqlite3.connect(copy)) as conn, closing(sqlite3.connect(":memory:")) as scratch:
        scratch.isolation_level = None
        for sql in good.values():
            scratch.execute(_if_not_exists(sql))
        conn.text_factory = bytes
        conn.execute("PRAGMA writable_schema = ON")
        try:
            entries = conn.execute("SELECT rowid, type, name, sql FROM sqlite_master").fetchall()
        except SQLITE_READ_ERRORS:
            return 0  # the first page is gone: the row readers say what is lost
        for rowid, kind, name, sql in entries:
            if sql is None or _parses(sql, scratch):
                continue
            text = (name or b"").decode("utf-8", "replace")
            if kind == b"table" and text in good:
                conn.execute(
                    "UPDATE sqlite_master SET sql = ? WHERE rowid = ?", (good[text], rowid)
                )
            else:
                conn.execute("DELETE FROM sqlite_master WHERE rowid = ?", (rowid,))
            mended += 1
        conn.commit()
    return mended


def _if_not_exists(sql: str) -> str:
    """The statement made harmless to repeat (parsed in full all the same)."""
    for head in ("CREATE TABLE ", "CREATE INDEX ", "CREATE UNIQUE INDEX "):
        if sql.startswith(head):
            return f"{head}IF NOT EXISTS {sql[len(head):]}"
    return sql


def _parses(sql: bytes, scratch: sqlite3.Connection) -> bool:
    """Whether a schema entry's text is UTF-8 SQL that SQLite accepts (tried in a
    scratch database that holds the new store's tables, inside a rolled-back savepoint)."""
    try:
        text = _if_not_exists(sql.decode("utf-8"))
        scratch.execute("SAVEPOINT probe")
        try:
            scratch.execute(text)
        finally:
            scratch.execute("ROLLBACK TO probe")
            scratch.execute("RELEASE probe")
    except (UnicodeDecodeError, sqlite3.Error):
        return False
    return True


def readable_rows(
    conn: sqlite3.Connection, table: str, columns: list[str]
) -> tuple[dict[int, tuple[object, ...]], set[int], bool]:
    """Rows by rowid, the rowids that could not be read, and whether the end of the
    table was out of reach (see the module docstring)."""
    select = f"SELECT rowid, {', '.join(quote(c) for c in columns)} FROM {quote(table)}"
    rows: dict[int, tuple[object, ...]] = {}

    def scan(order: str) -> bool:
        try:
            for row in conn.execute(f"{select} NOT INDEXED ORDER BY rowid {order}"):
                rows[row[0]] = tuple(row[1:])
        except SQLITE_READ_ERRORS:
            return False
        return True

    if scan("ASC"):
        return rows, set(), False
    low = max(rows, default=0)
    scan("DESC")
    after = [rowid for rowid in rows if rowid > low]
    high = min(after) if after else None
    unreadable: set[int] = set()
    rowid, misses = low + 1, 0
    while (rowid < high) if high is not None else (misses < OPEN_END_PROBES):
        try:
            row = conn.execute(f"{select} WHERE rowid = ?", (rowid,)).fetchone()
        except SQLITE_READ_ERRORS:
            unreadable.add(rowid)
            misses += 1
        else:
            if row is None:
                misses += 1
            else:
                rows[rowid] = tuple(row[1:])
                misses = 0
        rowid += 1
    if high is None:  # past the last readable row nobody knows which rowids existed
        last = max(rows, default=0)
        tail = {r for r in unreadable if r > last}
        return rows, unreadable - tail, bool(tail)
    return rows, unreadable, False


def recovered_rows(
    recovered: sqlite3.Connection,
    table: str,
    columns: list[str],
    have: dict[int, tuple[object, ...]],
) -> dict[int, tuple[object, ...]]:
    select = f"SELECT rowid, {', '.join(quote(c) for c in columns)} FROM {quote(table)}"
    try:
        found = recovered.execute(select).fetchall()
    except SQLITE_READ_ERRORS:
        return {}
    return {row[0]: tuple(row[1:]) for row in found if row[0] not in have}


def rows_from_indexes(
    conn: sqlite3.Connection, table: str, columns: list[str], have: set[int]
) -> dict[int, dict[str, object]]:
    """Columns of rows not in ``have``, read from the table's indexes alone (a covering
    index scan never touches the table's pages); each index gives its own columns."""
    found: dict[int, dict[str, object]] = {}
    try:
        indexes = [row[1] for row in conn.execute(f"PRAGMA index_list({quote(table)})")]
    except SQLITE_READ_ERRORS:
        return found
    for index in indexes:
        try:
            names = [row[2] for row in conn.execute(f"PRAGMA index_info({quote(index)})")]
        except SQLITE_READ_ERRORS:
            continue
        wanted = [n for n in names if n in columns]
        if not wanted:
            continue
        select = (
            f"SELECT rowid, {', '.join(quote(c) for c in wanted)} FROM {quote(table)} "
            f"INDEXED BY {quote(index)}"
        )
        try:
            for row in conn.execute(select):  # what reads before a damaged page is kept
                if row[0] not in have:
                    found.setdefault(row[0], {}).update(zip(wanted, row[1:], strict=True))
        except SQLITE_READ_ERRORS:
            continue
    return found


def complete_row(out: sqlite3.Connection, table: str, rowid: int, known: dict[str, object]) -> Row:
    """A row of the new store's ``table`` from the columns an index kept: the key from
    the rowid, a required column left empty ('' or 0), the rest NULL or its default."""
    values: list[object] = []
    for _cid, name, kind, notnull, default, pk in out.execute(f"PRAGMA table_info({quote(table)})"):
        if name in known:
            values.append(known[name])
        elif pk and "INT" in str(kind).upper():
            values.append(rowid)
        elif default is not None:
            values.append(out.execute(f"SELECT {default}").fetchone()[0])
        elif notnull:
            values.append("" if "TEXT" in str(kind).upper() else 0)
        else:
            values.append(None)
    return tuple(values)
