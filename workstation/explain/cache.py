"""Explanation cache: an in-memory LRU in front of optional JSON files on disk.

A VLM answer takes seconds, so the same image + map + model version + prompt is never
explained twice. Keys are content hashes, so a changed template (new prompt hash), a new
adapter (new version) or a re-run expert (new map) all miss the cache by construction.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np


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
    half-written entry; an unreadable entry counts as a miss.
    """

    def __init__(self, *, capacity: int = 256, folder: Path | str | None = None) -> None:
        self._capacity = max(capacity, 1)
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._folder = Path(folder) if folder is not None else None
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
        if self._folder is not None:
            self._folder.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=self._folder, suffix=".partial")
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as stream:
                    json.dump(record, stream)
                os.replace(temp, self._folder / f"{key}.json")
            finally:
                Path(temp).unlink(missing_ok=True)

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
        return record if isinstance(record, dict) else None
