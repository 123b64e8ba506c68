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

import hashlib
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from workstation.core.errors import UserError
from workstation.core.imageio import ImageReadError, header_size
from workstation.store.blobs import BlobStore, array_sha256, store_blobs_dir, store_images_dir
from workstation.store.errors import SQLITE_READ_ERRORS
from workstation.store.health import referenced_blobs
from workstation.store.model_files import (
    adopt_legacy_model_folders,
    copy_folder,
    store_models_dir,
)
from workstation.store.repository import Store
from workstation.store.salvage_rows import (
    complete_row,
    lenient,
    mend_schema,
    quote,
    readable_rows,
    recovered_rows,
    rows_from_indexes,
)

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
    rebuilt: int = 0
    """Of ``copied``, rows rebuilt from the table's indexes: the columns no index holds
    are empty (an image's file is then looked for by its name and hash)."""
    files_found: int = 0
    """Of ``rebuilt`` images, those whose file was found again by its name and hash."""
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
    schema_mended: int = 0
    """Damaged schema entries put right (an index dropped, a table's text restored)."""

    @property
    def rows(self) -> tuple[int, int]:
        """(rows copied, rows known lost) over all tables."""
        copied = sum(t.copied for t in self.tables)
        return copied, sum(t.unreadable + t.left_out for t in self.tables)

    @property
    def complete(self) -> bool:
        """Nothing was lost (the new store holds every row, array and model folder)."""
        return not (
            any(t.unreadable or t.tail_unknown or t.left_out for t in self.tables)
            or self.arrays_lost
            or self.models_lost
        )


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
                closing(sqlite3.connect(target, isolation_level=None)) as out,
            ):
                report.schema_mended = mend_schema(copy, out)
                damaged = lenient(copy)
                out.execute("PRAGMA foreign_keys = OFF")
                out.execute("BEGIN IMMEDIATE")
                outcome = {
                    name: _copy_table(name, damaged, recovered, out) for name in _tables(out)
                }
                _find_image_files(source, out, outcome["images"])
                _copy_arrays(source, target, out, outcome, report)
                _leave_out_orphans(out, outcome)
                _copy_models(source, target, out, report)
                out.execute("COMMIT")
                report.tables = list(outcome.values())
                damaged.close()
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
    except SQLITE_READ_ERRORS as exc:
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
        return [row[1] for row in conn.execute(f"PRAGMA table_info({quote(table)})")]
    except SQLITE_READ_ERRORS:
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
    if unreadable or tail_unknown:
        found = recovered_rows(recovered, table, columns, rows) if recovered else {}
        outcome.recovered = len(found)
        rows |= found
        partial = rows_from_indexes(damaged, table, columns, set(rows))
        rows |= {
            rowid: _with_columns(columns, out, table, rowid, known)
            for rowid, known in partial.items()
        }
        outcome.rebuilt = len(partial)
        unreadable -= rows.keys()
    listed = ", ".join(quote(c) for c in columns)
    marks = ", ".join("?" * len(columns))
    insert = f"INSERT OR IGNORE INTO {quote(table)} ({listed}) VALUES ({marks})"
    declared = {
        row[1]: str(row[2]).upper() for row in out.execute(f"PRAGMA table_info({quote(table)})")
    }
    texts = [n for n, c in enumerate(columns) if "TEXT" in declared.get(c, "")]
    refused = 0
    for row in rows.values():  # one by one: a garbled value refuses its row, not the table
        try:
            out.execute(insert, _as_text(row, texts))
        except sqlite3.Error:
            refused += 1
    outcome.copied = len(rows) - refused
    outcome.unreadable = len(unreadable) + refused
    outcome.tail_unknown = tail_unknown and not (outcome.recovered or outcome.rebuilt)
    return outcome


def _as_text(row: tuple[object, ...], texts: list[int]) -> tuple[object, ...]:
    """A damaged page can turn a text value into a blob: text columns get text back."""
    if not any(isinstance(row[n], bytes) for n in texts):
        return row
    values = list(row)
    for n in texts:
        if isinstance(values[n], bytes):
            values[n] = values[n].decode("utf-8", "replace")  # type: ignore[union-attr]
    return tuple(values)


def _with_columns(
    columns: list[str], out: sqlite3.Connection, table: str, rowid: int, known: dict[str, object]
) -> tuple[object, ...]:
    """An index-rebuilt row as values for ``columns`` (empty where no index held one)."""
    names = [row[1] for row in out.execute(f"PRAGMA table_info({quote(table)})")]
    full = dict(zip(names, complete_row(out, table, rowid, known), strict=True))
    return tuple(full[c] for c in columns)


def _find_image_files(source: Path, out: sqlite3.Connection, images: TableSalvage) -> None:
    """Images rebuilt from indexes know their name and hash but not their file: look for
    it beside the other images (and in the store's bundle images), matched by its hash."""
    lost = out.execute("SELECT id, name, sha256 FROM images WHERE path = ''").fetchall()
    if not lost:
        return
    folders = {Path(p).parent for (p,) in out.execute("SELECT path FROM images WHERE path != ''")}
    bundled = store_images_dir(source)
    for image_id, name, sha in lost:
        candidates = [f / name for f in folders] + [bundled / str(sha)[:16] / name]
        for candidate in candidates:
            try:
                data = candidate.read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() != sha:
                continue
            try:
                width, height = header_size(data, name=str(candidate))
            except ImageReadError:
                continue
            out.execute(
                "UPDATE images SET path = ?, width = ?, height = ? WHERE id = ?",
                (str(candidate), width, height, image_id),
            )
            images.files_found += 1
            break


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
    for sha in sorted(referenced_blobs(out), key=str):
        try:
            array = old.get_array(str(sha))
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
            keys = out.execute(f"PRAGMA foreign_key_list({quote(table)})").fetchall()
            column = next(row[3] for row in keys if row[0] == key)
            required = {  # NOT NULL, or the key itself (a rowid alias cannot be NULL)
                row[1]
                for row in out.execute(f"PRAGMA table_info({quote(table)})")
                if row[3] or row[5]
            }
            if column in required:
                if out.execute(f"DELETE FROM {quote(table)} WHERE rowid = ?", (rowid,)).rowcount:
                    outcome[table].left_out += 1
                    outcome[table].copied -= 1
            else:
                out.execute(
                    f"UPDATE {quote(table)} SET {quote(column)} = NULL WHERE rowid = ?",
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
