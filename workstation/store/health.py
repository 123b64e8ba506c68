"""Looking for damage in a store without changing it (``iad-workstation doctor``).

Why read-only: a store that may be damaged must not be migrated, garbage-collected or
checkpointed by the tool that is meant to judge it, so everything here opens the file
with ``mode=ro`` and only reads; the write checks open the file for writing and create
a probe file in each folder, then remove it, and change nothing.

Each finding carries its one-line fix. ``deep`` runs SQLite's full ``integrity_check``
(it also checks every index against its table) and re-hashes every blob; the default
runs ``quick_check``, compares the referenced and the stored blobs by name, and hashes
the model folders (a handful of files).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workstation.core.checks import CheckResult
from workstation.core.errors import UserError
from workstation.core.tempfiles import is_stale, temp_files
from workstation.store.blobs import BlobStore, array_sha256, store_blobs_dir, store_images_dir
from workstation.store.errors import SQLITE_READ_ERRORS, as_database_error
from workstation.store.model_files import (
    FilesProblem,
    files_state,
    fix_for,
    resolve_model_path,
    store_models_dir,
)

MAX_LISTED = 3
"""Problems of one kind listed by name; the rest are counted."""


def repair_fix(path: Path) -> str:
    return (
        f"salvage what is readable into a new store: iad-workstation repair --db {path} "
        f"{path.with_name(path.stem + '-repaired.sqlite')} (the original is kept as it is)"
    )


@contextmanager
def read_only_connection(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def read_station_id(path: Path) -> str | None:
    """The store's station id (``sync``), read-only; None before the migration made one."""
    try:
        with read_only_connection(path) as conn:
            row = conn.execute("SELECT value FROM app_state WHERE key = 'station.id'").fetchone()
    except SQLITE_READ_ERRORS:
        return None
    return None if row is None else str(row[0])


def row_counts(path: Path) -> dict[str, int]:
    """Rows per table of a readable store (read-only; what ``bench damage`` compares)."""
    with read_only_connection(path) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


def referenced_blobs(conn: sqlite3.Connection) -> set[str]:
    """Hashes of every array a row refers to (masks and anomaly maps)."""
    rows = conn.execute(
        "SELECT blob FROM mask_revisions UNION SELECT map_blob FROM predictions "
        "WHERE map_blob IS NOT NULL"
    ).fetchall()
    return {row[0] for row in rows}


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return shown + (f"; and {more} more" if more > 0 else "")


def check_store_file(path: Path, *, deep: bool) -> list[CheckResult]:
    """SQLite's own check of every page (and every index with ``deep``), and the rows
    that point at rows which are gone."""
    pragma = "integrity_check" if deep else "quick_check"
    try:
        with read_only_connection(path) as conn:
            messages = [row[0] for row in conn.execute(f"PRAGMA {pragma}").fetchall()]
            orphans = conn.execute("PRAGMA foreign_key_check").fetchall()
    except SQLITE_READ_ERRORS as exc:
        detail = f"{path}: {as_database_error(exc) or exc}"
        return [CheckResult("store pages", False, detail, repair_fix(path))]
    findings = []
    damage = [m for m in messages if m != "ok"]
    if damage:
        findings.append(
            CheckResult(
                "store pages",
                False,
                f"{path} is damaged ({pragma}: {len(damage)} problem(s): {_listed(damage)})",
                repair_fix(path),
            )
        )
    else:
        findings.append(CheckResult("store pages", True, f"{pragma}: every page reads back"))
    if orphans:
        listed = [f"row {row[1]} of {row[0]} points to a missing {row[2]} row" for row in orphans]
        findings.append(
            CheckResult("store references", False, _listed(listed), repair_fix(path))
        )
    return findings


def _write_problem(target: Path) -> str | None:
    """Why ``target`` (a file or a folder) cannot be written; None when it can."""
    try:
        if target.is_dir():
            probe = target / f".doctor-probe-{os.getpid()}-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        else:
            with open(target, "r+b"):
                pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_writable(path: Path) -> list[CheckResult]:
    """The store file, its folder, its blobs and its models can all be written."""
    targets = [path, path.parent, store_blobs_dir(path), store_models_dir(path)]
    problems = [
        f"{target} ({reason})"
        for target in targets
        if target.exists() and (reason := _write_problem(target)) is not None
    ]
    if not problems:
        return [CheckResult("store writable", True, "the file and its folders accept writes")]
    return [
        CheckResult(
            "store writable",
            False,
            f"cannot write {_listed(problems)}",
            "make them writable for this user (chmod u+w; chattr -i if immutable), or copy "
            "the store and its folders to a writable place and pass --db",
        )
    ]


def check_blobs(path: Path, *, deep: bool) -> list[CheckResult]:
    """Every array a row references is there (and, ``deep``, still has its hash)."""
    with read_only_connection(path) as conn:
        try:
            referenced = referenced_blobs(conn)
        except SQLITE_READ_ERRORS as exc:
            detail = f"cannot list the arrays in use: {as_database_error(exc) or exc}"
            return [CheckResult("blobs", False, detail, repair_fix(path))]
    blobs = BlobStore(store_blobs_dir(path))
    stored = set(blobs.iter_blobs())
    missing = sorted(referenced - stored)
    damaged = []
    if deep:
        for sha in sorted(stored & referenced):
            try:
                ok = array_sha256(blobs.get_array(sha)) == sha
            except UserError:
                ok = False
            if not ok:
                damaged.append(sha)
    findings = []
    if missing or damaged:
        listed = [f"{sha[:12]} missing" for sha in missing]
        listed += [f"{sha[:12]} does not match its hash" for sha in damaged]
        findings.append(
            CheckResult(
                "blobs",
                False,
                f"{len(missing) + len(damaged)} of {len(referenced)} arrays in "
                f"{blobs.root} are lost: {_listed(listed)}",
                f"restore {blobs.root} from a backup, or {repair_fix(path)} (rows whose "
                "arrays are lost are left out)",
            )
        )
    else:
        how = "re-hashed" if deep else "present (re-hash them with --deep)"
        detail = f"all {len(referenced)} arrays in use are {how}"
        findings.append(CheckResult("blobs", True, detail))
    unused = len(stored - referenced)
    if unused:
        findings.append(
            CheckResult(
                "blobs unused",
                False,
                f"{unused} array file(s) no row uses (left by an interrupted write)",
                "nothing to do: they are removed the next time the store is opened to write",
                severity="optional",
            )
        )
    return findings


def check_models(path: Path) -> list[CheckResult]:
    """Each model version's folder still hashes as it did when it was registered."""
    models = store_models_dir(path)
    with read_only_connection(path) as conn:
        try:
            rows = conn.execute(
                "SELECT v.name, v.kind, v.path, v.files_sha256, p.name FROM model_versions v "
                "JOIN products p ON p.id = v.product_id WHERE v.path IS NOT NULL ORDER BY v.id"
            ).fetchall()
        except SQLITE_READ_ERRORS as exc:
            detail = f"cannot list the model versions: {as_database_error(exc) or exc}"
            return [CheckResult("models", False, detail, repair_fix(path))]
    findings = []
    for name, kind, stored, digest, product in rows:
        folder = resolve_model_path(stored, models)
        state = files_state(folder, digest)
        if state == "ok":
            continue
        problem = FilesProblem(name, state, folder, fix_for(kind, product))
        refit = kind == "experts" and state != "changed"  # the inspector refits those itself
        findings.append(
            CheckResult(
                f"model {name}",
                False,
                problem.detail,
                "nothing to do: the next inspection refits them" if refit else problem.fix,
                severity="optional" if refit else "required",
            )
        )
    if not findings:
        detail = f"{len(rows)} model folder(s) hash as registered"
        findings.append(CheckResult("models", True, detail))
    return findings


def check_temp_files(path: Path) -> list[CheckResult]:
    """Temp files left by killed writers (an import, a sync) beside the arrays and the
    images that came in bundles; the next write removes those of dead writers."""
    folders = (store_blobs_dir(path), store_images_dir(path))
    found = [str(p) for folder in folders for p in temp_files(folder, recursive=True)]
    if not found:
        return [CheckResult("temp files", True, "no temp files left behind")]
    stale = sum(is_stale(Path(p)) for p in found)
    return [
        CheckResult(
            "temp files",
            False,
            f"{len(found)} temp file(s) left behind ({stale} by writers that are gone): "
            f"{_listed(found)}",
            "nothing to do: the next command that writes to the store removes them",
            severity="optional",
        )
    ]


def check_store_health(path: Path, *, deep: bool = False) -> list[CheckResult]:
    """Every check above; the blob and model checks only when the file reads back."""
    findings = check_store_file(path, deep=deep) + check_writable(path)
    if all(f.ok for f in findings if f.name == "store pages"):
        findings += check_blobs(path, deep=deep) + check_models(path)
    return findings + check_temp_files(path)
