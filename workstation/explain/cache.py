"""Explanation cache: an in-memory LRU in front of optional JSON files on disk.

A VLM answer takes seconds, so the same image + map + model version + prompt is never
explained twice. Keys are content hashes, so a changed template (new prompt hash), a new
adapter (new version) or a re-run expert (new map) all miss the cache by construction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DISK_ENTRIES = 20_000
"""Explanations kept on disk (a few kB each, so ~50-100 MB): several shifts of review at
one image every few seconds, while a workstation that runs for years cannot fill its disk.
Older images that come back are simply explained again."""


def array_digest(array: np.ndarray) -> str:
    """Content hash of an array, including its shape and dtype."""
    data = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{data.shape}{data.dtype}".encode())
    digest.update(data.tobytes())
    return digest.hexdigest()[:20]


def cache_key(*, image: str, anomaly_map: str, model_version: str, prompt: str) -> str:
    return hashlib.sha256(f"{image}|{anomaly_map}|{model_version}|{prompt}".encode()).hexdigest()


class ResultCache:
    """Thread-safe LRU of JSON-able records, mirrored to ``folder`` when one is given.

    Disk entries are written to a temporary file and renamed, so a crash never leaves a
    half-written entry; an unreadable entry counts as a miss. The folder keeps at most
    ``disk_capacity`` entries: past it, the least recently used tenth is deleted (reads
    refresh an entry's time). A failed disk write (full disk, read-only folder) is logged
    and skipped: the cache only saves time, the explanation itself lives in the store.
    """

    def __init__(
        self,
        *,
        capacity: int = 256,
        folder: Path | str | None = None,
        disk_capacity: int = DISK_ENTRIES,
    ) -> None:
        self._capacity = max(capacity, 1)
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._folder = Path(folder) if folder is not None else None
        self._disk_capacity = max(disk_capacity, 1)
        self._disk_count: int | None = None
        """Entries on disk, counted once, then kept up to date by ``put``."""
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        record = self._read(key)
        if record is not None:
            self._remember(key, record)
        return record

    def put(self, key: str, record: dict[str, Any]) -> None:
        self._remember(key, record)
        if self._folder is None:
            return
        try:
            self._write(self._folder, key, record)
        except OSError as exc:
            log.warning("explanation cache: could not write to %s: %s", self._folder, exc)

    def _write(self, folder: Path, key: str, record: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{key}.json"
        is_new = not target.exists()
        handle, temp = tempfile.mkstemp(dir=folder, suffix=".partial")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(record, stream)
            os.replace(temp, target)
        finally:
            Path(temp).unlink(missing_ok=True)
        with self._lock:
            if self._disk_count is None:
                self._disk_count = sum(1 for _ in folder.glob("*.json"))
            elif is_new:
                self._disk_count += 1
            if self._disk_count > self._disk_capacity:
                self._disk_count = self._prune(folder)

    def _prune(self, folder: Path) -> int:
        """Delete the least recently used entries down to 90 % of the capacity."""
        entries = []
        for path in folder.glob("*.json"):
            try:
                entries.append((path.stat().st_mtime, path))
            except OSError:
                continue
        entries.sort()
        keep = int(self._disk_capacity * 0.9)
        for _, path in entries[: max(len(entries) - keep, 0)]:
            path.unlink(missing_ok=True)
        return min(len(entries), keep)

    def __len__(self) -> int:
        return len(self._items)

    def _remember(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._items[key] = record
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def _read(self, key: str) -> dict[str, Any] | None:
        if self._folder is None:
            return None
        path = self._folder / f"{key}.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: among the last to be pruned
        return record if isinstance(record, dict) else None
