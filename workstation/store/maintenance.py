"""Keeping a store clean: collecting what crashed writers left behind, checking integrity.

A blob is written inside the write transaction that references it, so a blob that no row
references while we hold the write lock can only be the leftover of a crashed writer;
that is what lets :meth:`collect_garbage` run safely on every open.
"""

from __future__ import annotations

import shutil
import time

from workstation.core.tempfiles import pid_alive, remove_stale, temp_files
from workstation.store.base import StoreBase
from workstation.store.blobs import store_images_dir
from workstation.store.health import referenced_blobs
from workstation.store.model_files import STAGING_PREFIX

_GC_STATE_KEY = "store.last_garbage_collection"
_GC_MARGIN_S = 120.0
"""Blobs modified shortly before the last collection are checked again (clock skew, mtime)."""


class MaintenanceMixin(StoreBase):
    """Garbage collection and integrity checks."""

    def collect_garbage(self) -> int:
        """Delete temp files of dead writers and blobs no row references; return the count."""
        removed = self.blobs.remove_stale_temps() + self._remove_stale_model_staging()
        removed += remove_stale(store_images_dir(self.path), recursive=True)
        with self._write() as w:
            row = w.conn.execute("SELECT value FROM app_state WHERE key = ?", (_GC_STATE_KEY,))
            found = row.fetchone()
            since = float(found[0]) - _GC_MARGIN_S if found else None
            started = time.time()
            for sha in list(self.blobs.iter_blobs(newer_than=since)):
                referenced = w.conn.execute(
                    "SELECT 1 FROM mask_revisions WHERE blob = ? "
                    "UNION ALL SELECT 1 FROM predictions WHERE map_blob = ? LIMIT 1",
                    (sha, sha),
                ).fetchone()
                if referenced is None:
                    self.blobs.delete(sha)
                    removed += 1
            w.conn.execute(
                "INSERT OR REPLACE INTO app_state (key, value) VALUES (?, ?)",
                (_GC_STATE_KEY, repr(started)),
            )
        return removed

    def _remove_stale_model_staging(self) -> int:
        """Half-written version folders of fits or copies whose process died."""
        removed = 0
        if not self.models_dir.is_dir():
            return 0
        for entry in self.models_dir.iterdir():
            pid_text = entry.name[len(STAGING_PREFIX) :].split("-", 1)[0]
            if entry.name.startswith(STAGING_PREFIX) and not (
                pid_text.isdigit() and pid_alive(int(pid_text))
            ):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed

    def check_integrity(self) -> list[str]:
        """Problems found in the file and the blobs (empty when the store is consistent)."""
        db = self._db()
        problems = [
            f"sqlite: {row[0]}"
            for row in db.execute("PRAGMA integrity_check").fetchall()
            if row[0] != "ok"
        ]
        problems += [
            f"row {row[1]} of {row[0]} points to a missing {row[2]} row"
            for row in db.execute("PRAGMA foreign_key_check").fetchall()
        ]
        referenced = referenced_blobs(db.conn)
        stored = set(self.blobs.iter_blobs())
        problems += [f"blob {sha} is referenced but missing" for sha in referenced - stored]
        problems += [f"blob {sha} is not referenced by any row" for sha in stored - referenced]
        problems += [
            f"temporary file {p} was left behind"
            for p in [
                *self.blobs.temp_files(),
                *temp_files(store_images_dir(self.path), recursive=True),
            ]
        ]
        return problems
