"""Model folders that belong to one store: ``<name>.models/<version name>/`` beside its blobs.

Why beside the store and not in a shared home folder: two stores can each have a product
named ``bsd``, and a shared ``models/bsd/experts-1`` would let the second store's fit
overwrite the first one's model while the first store's row still points at it. A folder
owned by one store can only be written by that store's registrations.

Every kind of model version (fitted experts, trained adapters, VLM adapters, any kind
added later) registers its files the same way: the folder is moved in under the version
name and its content hash is recorded in the row; loading re-hashes it, so a changed
folder is refused with a fix instead of being used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from workstation.core.errors import UserError

STAGING_PREFIX = ".tmp-"
_CHUNK = 1 << 20

FilesState = Literal["ok", "missing", "changed", "unhashed"]
"""ok: the folder hashes as registered; missing: no folder; changed: another hash;
unhashed: registered before hashes were recorded (legacy), so its origin is unknown."""

_REFIT = "refit them: iad-workstation inspect --product {product} --refit"
_RETRAIN = (
    "roll it back (iad-workstation models rollback --product {product} --kind {kind}) or "
    "train a new round (iad-workstation train --product {product} --kind {kind})"
)


class ModelFilesError(UserError):
    """A model version's files are missing or no longer what was registered."""


def store_models_dir(db_path: Path) -> Path:
    """The folder that holds every model version of the store at ``db_path``."""
    return db_path.parent / f"{db_path.stem}.models"


def resolve_model_path(stored: str, models_dir: Path) -> Path:
    """A row's ``path``: relative to the store's models folder (so a moved store keeps
    its models), or absolute for a row written before models lived in the store."""
    path = Path(stored)
    return path if path.is_absolute() else models_dir / path


def folder_sha256(folder: Path) -> str:
    """One hash over every file's relative path and bytes (order-independent of listing)."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        relative = path.relative_to(folder).as_posix()
        digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def files_state(folder: Path | None, recorded: str | None) -> FilesState:
    if folder is None or not folder.is_dir():
        return "missing"
    if recorded is None:
        return "unhashed"
    return "ok" if folder_sha256(folder) == recorded else "changed"


def fix_for(kind: str, product: str) -> str:
    """The one-line fix for a model version whose files cannot be trusted: fitted experts
    are refitted, every trained kind is rolled back or trained again."""
    return (_REFIT if kind == "experts" else _RETRAIN).format(kind=kind, product=product)


@dataclass(frozen=True)
class FilesProblem:
    """Why a version's folder cannot be used, and what to do about it."""

    version: str
    state: FilesState
    folder: Path | None
    fix: str

    @property
    def detail(self) -> str:
        what = {
            "missing": "are missing",
            "changed": "changed after it was registered (the content hash differs)",
            "unhashed": "were registered without a content hash (before models moved "
            "into the store), so they may belong to another store",
            "ok": "are fine",
        }[self.state]
        return f"the files of model {self.version} in {self.folder} {what}"

    @property
    def message(self) -> str:
        return f"{self.detail}; {self.fix}"


def staging_folder(models_dir: Path) -> Path:
    """A fresh, empty folder inside the models dir for writing a version before it is
    registered (same file system, so registering is a rename)."""
    folder = models_dir / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    return folder


def move_into_place(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (copying across file systems); a leftover
    ``target`` without a row (a crash between rename and commit) is replaced."""
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))


def copy_folder(source: Path, target: Path) -> None:
    """Copy a folder under a temp name, then rename: never half a model folder."""
    temp = target.parent / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(source, temp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def adopt_legacy_model_folders(conn: sqlite3.Connection, models_dir: Path) -> int:
    """Copy trained versions registered with an absolute path into ``models_dir`` and
    hash them; return how many. ``experts`` rows are left unhashed (see migration 2)."""
    rows = conn.execute(
        "SELECT id, name, path FROM model_versions WHERE path IS NOT NULL "
        "AND files_sha256 IS NULL AND kind != 'experts'"
    ).fetchall()
    adopted = 0
    for version_id, name, stored in rows:
        if not Path(stored).is_absolute() or not Path(stored).is_dir():
            continue  # gone already: doctor reports it, loading names the fix
        copy_folder(Path(stored), models_dir / name)
        conn.execute(
            "UPDATE model_versions SET path = ?, files_sha256 = ? WHERE id = ?",
            (name, folder_sha256(models_dir / name), version_id),
        )
        adopted += 1
    return adopted
