"""The explanation cache: bounded on disk, least recently used first out, never fatal."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from workstation.explain.cache import ResultCache


def _age(folder: Path, key: str, seconds_ago: float) -> None:
    path = folder / f"{key}.json"
    stamp = path.stat().st_mtime - seconds_ago
    os.utime(path, (stamp, stamp))


def test_disk_entries_stay_bounded_and_recently_read_ones_survive(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    cache = ResultCache(capacity=1, folder=folder, disk_capacity=10)
    for index in range(10):
        cache.put(f"k{index}", {"i": index})
        _age(folder, f"k{index}", 1000 - index)  # k0 oldest
    assert ResultCache(capacity=1, folder=folder).get("k0") == {"i": 0}  # read: now recent
    cache.put("k10", {"i": 10})  # 11 > 10: prune to 9
    left = sorted(p.stem for p in folder.glob("*.json"))
    assert len(left) == 9
    assert "k0" in left and "k10" in left
    assert "k1" not in left and "k2" not in left  # the least recently used went first


def test_existing_entries_are_counted_when_a_new_process_opens_the_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "cache"
    first = ResultCache(folder=folder, disk_capacity=5)
    for index in range(5):
        first.put(f"k{index}", {"i": index})
    ResultCache(folder=folder, disk_capacity=5).put("new", {"i": 99})
    assert len(list(folder.glob("*.json"))) == 4


def test_a_failed_disk_write_is_logged_and_the_answer_is_kept_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = ResultCache(folder=blocker)
    with caplog.at_level(logging.WARNING):
        cache.put("k", {"verdict": "anomalous"})
    assert cache.get("k") == {"verdict": "anomalous"}
    assert "could not write" in caplog.text


def test_an_unreadable_entry_is_a_miss(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "k.json").write_text("{half")
    assert ResultCache(folder=folder).get("k") is None
