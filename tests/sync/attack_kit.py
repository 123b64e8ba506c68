"""Crafting hostile bundles and checking that a refusal changed nothing.

A crafted bundle keeps its manifest's hashes right (``bench.hostile.write_bundle``
recomputes them), so an attack reaches the field checks instead of stopping at a hash mismatch.
:class:`Watch` snapshots every file outside the places a command may write (names,
sizes, mtimes, sha256) plus the store's integrity check and row counts, and
:func:`refused` runs the CLI entry point and asserts one line, exit code 2, and that
nothing outside changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from workstation.__main__ import main
from workstation.bench.hostile import read_bundle, write_bundle

__all__ = ["Watch", "jsonl", "read_bundle", "refused", "rows", "snapshot", "write_bundle"]

MANIFEST = "manifest.json"
Snapshot = dict[str, tuple[int, int, str]]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def rows(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def snapshot(root: Path, skip: Iterable[Path]) -> Snapshot:
    """Every file and link under ``root`` outside ``skip``: size, mtime (ns), sha256."""
    skipped = [p.resolve() for p in skip]
    found: Snapshot = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if (here / d).resolve() not in skipped]
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            path = here / name
            stat = path.lstat()
            digest = "" if path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns, digest)
        for name in dirs:
            found[str((here / name).relative_to(root)) + "/"] = (0, 0, "dir")
    return found


def store_state(db: Path) -> tuple[str, dict[str, int]]:
    """The store's integrity check and its row count per table (read-only)."""
    if not db.exists():
        return "absent", {}
    conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        counts = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()
    return check, counts


@dataclass
class Watch:
    """What must not change: files under ``root`` outside ``allowed``, and the store."""

    root: Path
    db: Path | None = None
    allowed: list[Path] = field(default_factory=list)

    def state(self) -> tuple[Snapshot, tuple[str, dict[str, int]]]:
        store = ("absent", {}) if self.db is None else store_state(self.db)
        return snapshot(self.root, self.allowed), store


def refused(
    watch: Watch,
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    *,
    words: str = "malformed",
) -> str:
    """Run the CLI: exit 2, one short error line holding ``words`` (after any progress
    lines), nothing outside changed."""
    before = watch.state()
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    err = lines[-1] if lines else ""
    assert code == 2, (code, err[:500], captured.out[-500:])
    errors = [line for line in lines if line.startswith("error:")]  # others: progress
    assert errors == [err], lines[-5:]
    assert words in err, err[:500]
    assert len(err) < 700, len(err)
    assert "a bug" not in err and "store is damaged" not in err, err
    after = watch.state()
    assert after[1] == before[1], "the store changed"
    assert after[0] == before[0], sorted(set(after[0].items()) ^ set(before[0].items()))[:5]
    return err
