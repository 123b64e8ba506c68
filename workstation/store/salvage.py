"""Salvaging a damaged store into a new one (``iad-workstation repair``).

The original is never written: the file (and its write-ahead log) is copied into a
temporary folder and read from there, blobs and model folders are only read. The new
store is created by the normal migrations, so it has the current schema whatever the
old one had, and rows are copied table by table with their ids, so references between
them hold.

How rows are read from a damaged table: a forward scan in rowid order until it meets
the damage, a backward scan from the end until it meets it, then the rowids in between
one by one; a lookup that fails is counted as unreadable. When the ``sqlite3`` command
is installed and its ``.recover`` works (it needs a build with the ``sqlite_dbpage``
table, which some distributions leave out), what it salvages fills in rows the scans
could not read. Rows whose parent row is lost are then left out (or their optional
reference cleared), and so are mask revisions whose array file is lost, so the new
store passes its own integrity check.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from workstation.core.errors import UserError
from workstation.store.blobs import BlobStore, array_sha256, store_blobs_dir
from workstation.store.health import referenced_blobs
from workstation.store.model_files import (
    adopt_legacy_model_folders,
    copy_folder,
    store_models_dir,
)
from workstation.store.repository import Store

OPEN_END_PROBES = 1000
"""Rowids tried past the damage when the end of a table cannot be read either."""
RECOVER_TIMEOUT_S = 600.0
SKIPPED_TABLES = ("fit_locks",)
"""Transient rows: a fit lock of the damaged store means nothing in the new one."""
MAX_ORPHAN_PASSES = 16


@dataclass
class TableSalvage:
    table: str
    copied: int = 0
    unreadable: int = 0
    """Rows whose page could not be read (an estimate when ``tail_unknown``)."""
    tail_unknown: bool = False
    """The end of the table could not be read, so rows there cannot even be counted."""
    recovered: int = 0
    """Of ``copied``, rows that only ``sqlite3 .recover`` could read."""
    left_out: int = 0
    """Readable rows left out because a row or an array they need is lost."""


@dataclass
class SalvageReport:
    source: Path
    target: Path
    recover_note: str
    tables: list[TableSalvage] = field(default_factory=list)
    arrays_copied: int = 0
    arrays_lost: int = 0
    models_copied: int = 0
    models_lost: int = 0

    @property
    def complete(self) -> bool:
        """Nothing was lost (the new store holds every row, array and model folder)."""
        return not (
            any(t.unreadable or t.tail_unknown or t.left_out for t in self.tables)
            or self.arrays_lost
            or self.models_lost
        )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def salvage_store(source: Path, target: Path) -> SalvageReport:
    """Copy whatever ``source`` still holds into the new store ``target``."""
    source, target = Path(source).absolute(), Path(target).absolute()
    if not source.is_file():
        raise UserError(f"no store at {source}; pass the damaged store with --db")
    for taken in (target, store_blobs_dir(target), store_models_dir(target)):
        if taken.exists():
            raise UserError(
                f"{taken} exists already; repair only writes a new store, so name one that "
                "is not there yet"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".salvage-", dir=target.parent) as work:
        copy = _working_copy(source, Path(work))
        recovered, note = _run_recover(copy, Path(work))
        report = SalvageReport(source, target, note)
        Store.open(target).close()  # the current schema, by the normal migrations
        try:
            with (
                closing(sqlite3.connect(copy)) as damaged,
                closing(sqlite3.connect(target, isolation_level=None)) as out,
            ):
                out.execute("PRAGMA foreign_keys = OFF")
                out.execute("BEGIN IMMEDIATE")
                outcome = {
                    name: _copy_table(name, damaged, recovered, out) for name in _tables(out)
                }
                _copy_arrays(source, target, out, outcome, report)
                _leave_out_orphans(out, outcome)
                _copy_models(source, target, out, report)
                out.execute("COMMIT")
                report.tables = list(outcome.values())
        finally:
            if recovered is not None:
                recovered.close()
    return report


def _working_copy(source: Path, work: Path) -> Path:
    """The store file and its write-ahead log, copied: reading may replay the log."""
    copy = work / source.name
    shutil.copyfile(source, copy)
    wal = source.with_name(source.name + "-wal")
    if wal.is_file():
        shutil.copyfile(wal, work / wal.name)
    return copy


def _run_recover(copy: Path, work: Path) -> tuple[sqlite3.Connection | None, str]:
    """SQLite's ``.recover`` into a scratch database, when the command can do it here."""
    exe = shutil.which("sqlite3")
    if exe is None:
        return None, "the sqlite3 command is not installed: rows were read one by one"
    try:
        done = subprocess.run(
            [exe, str(copy), ".recover"], capture_output=True, timeout=RECOVER_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"sqlite3 .recover did not run ({exc}): rows were read one by one"
    errors = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0 or errors or not done.stdout.rstrip().endswith(b"COMMIT;"):
        reason = errors.splitlines()[0] if errors else f"exit code {done.returncode}"
        return None, f"sqlite3 .recover does not work here ({reason}): rows were read one by one"
    recovered = sqlite3.connect(work / "recovered.sqlite")
    try:
        recovered.executescript(done.stdout.decode("utf-8", "replace"))
    except sqlite3.DatabaseError as exc:
        recovered.close()
        return None, f"sqlite3 .recover gave unusable SQL ({exc}): rows were read one by one"
    return recovered, "sqlite3 .recover filled in what the row-by-row reading could not"


def _tables(out: sqlite3.Connection) -> list[str]:
    """The new store's tables in creation order (parents before children)."""
    rows = out.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY rowid"
    ).fetchall()
    return [row[0] for row in rows if row[0] not in SKIPPED_TABLES]


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    try:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({_quote(table)})")]
    except sqlite3.DatabaseError:
        return []


def _copy_table(
    table: str,
    damaged: sqlite3.Connection,
    recovered: sqlite3.Connection | None,
    out: sqlite3.Connection,
) -> TableSalvage:
    outcome = TableSalvage(table)
    present = set(_columns(damaged, table))
    columns = [c for c in _columns(out, table) if c in present]
    if not columns:
        outcome.tail_unknown = True  # the table itself cannot be found: nothing to count
        return outcome
    rows, unreadable, tail_unknown = readable_rows(damaged, table, columns)
    if recovered is not None and (unreadable or tail_unknown):
        found = _recovered_rows(recovered, table, columns, rows)
        outcome.recovered = len(found)
        unreadable -= found.keys()
        rows |= found
    listed = ", ".join(_quote(c) for c in columns)
    marks = ", ".join("?" * len(columns))
    out.executemany(
        f"INSERT OR IGNORE INTO {_quote(table)} ({listed}) VALUES ({marks})", rows.values()
    )
    outcome.copied = len(rows)
    outcome.unreadable = len(unreadable)
    outcome.tail_unknown = tail_unknown and outcome.recovered == 0
    return outcome


def readable_rows(
    conn: sqlite3.Connection, table: str, columns: list[str]
) -> tuple[dict[int, tuple[object, ...]], set[int], bool]:
    """Rows by rowid, the rowids that could not be read, and whether the end of the
    table was out of reach (see the module docstring)."""
    select = f"SELECT rowid, {', '.join(_quote(c) for c in columns)} FROM {_quote(table)}"
    rows: dict[int, tuple[object, ...]] = {}

    def scan(order: str) -> bool:
        try:
            for row in conn.execute(f"{select} NOT INDEXED ORDER BY rowid {order}"):
                rows[row[0]] = tuple(row[1:])
        except sqlite3.DatabaseError:
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
        except sqlite3.DatabaseError:
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


def _recovered_rows(
    recovered: sqlite3.Connection,
    table: str,
    columns: list[str],
    have: dict[int, tuple[object, ...]],
) -> dict[int, tuple[object, ...]]:
    select = f"SELECT rowid, {', '.join(_quote(c) for c in columns)} FROM {_quote(table)}"
    try:
        found = recovered.execute(select).fetchall()
    except sqlite3.DatabaseError:
        return {}
    return {row[0]: tuple(row[1:]) for row in found if row[0] not in have}


def _copy_arrays(
    source: Path,
    target: Path,
    out: sqlite3.Connection,
    outcome: dict[str, TableSalvage],
    report: SalvageReport,
) -> None:
    """Copy each referenced array whose file still hashes right; rows that need a lost
    one are left out (masks) or lose the optional reference (anomaly maps)."""
    old, new = BlobStore(store_blobs_dir(source)), BlobStore(store_blobs_dir(target))
    for sha in sorted(referenced_blobs(out)):
        try:
            array = old.get_array(sha)
            intact = array_sha256(array) == sha
        except UserError:
            intact = False
        if intact:
            new.put_array(array)
            report.arrays_copied += 1
            continue
        report.arrays_lost += 1
        gone = out.execute("DELETE FROM mask_revisions WHERE blob = ?", (sha,)).rowcount
        outcome["mask_revisions"].left_out += gone
        outcome["mask_revisions"].copied -= gone
        out.execute("UPDATE predictions SET map_blob = NULL WHERE map_blob = ?", (sha,))


def _leave_out_orphans(out: sqlite3.Connection, outcome: dict[str, TableSalvage]) -> None:
    """Rows pointing at a lost row: clear an optional reference, else leave the row out
    (repeated, since leaving out a row can orphan its own children)."""
    for _ in range(MAX_ORPHAN_PASSES):
        violations = out.execute("PRAGMA foreign_key_check").fetchall()
        if not violations:
            return
        for table, rowid, _parent, key in violations:
            keys = out.execute(f"PRAGMA foreign_key_list({_quote(table)})").fetchall()
            column = next(row[3] for row in keys if row[0] == key)
            required = {
                row[1] for row in out.execute(f"PRAGMA table_info({_quote(table)})") if row[3]
            }
            if column in required:
                if out.execute(f"DELETE FROM {_quote(table)} WHERE rowid = ?", (rowid,)).rowcount:
                    outcome[table].left_out += 1
                    outcome[table].copied -= 1
            else:
                out.execute(
                    f"UPDATE {_quote(table)} SET {_quote(column)} = NULL WHERE rowid = ?",
                    (rowid,),
                )
    raise UserError("the salvaged rows keep referring to lost rows; report this store")


def _copy_models(
    source: Path, target: Path, out: sqlite3.Connection, report: SalvageReport
) -> None:
    """Version folders come along (as they are: a changed one stays visible to doctor)."""
    old, new = store_models_dir(source), store_models_dir(target)
    rows = out.execute("SELECT path FROM model_versions WHERE path IS NOT NULL").fetchall()
    for (stored,) in rows:
        if Path(stored).is_absolute():
            continue  # written before models lived in the store: adopted below
        if (old / stored).is_dir():
            copy_folder(old / stored, new / stored)
            report.models_copied += 1
        else:
            report.models_lost += 1
    report.models_copied += adopt_legacy_model_folders(out, new)

