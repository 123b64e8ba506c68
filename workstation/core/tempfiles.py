"""Temp files beside their final place: random names made with ``O_EXCL``, and the
leftovers of dead writers found and removed on a later run.

Why not ``OUT.partial``: a predictable name can be planted beforehand (a symlink to a
file the user may write), and opening it for writing would follow the link. ``mkstemp``
creates a new file under a random name and fails rather than open anything already
there. The writer's process id is part of the name, so a later run can tell a dead
writer's leftover from a live writer's file.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".tmp-"
STALE_TEMP_AGE_S = 3600.0
"""A temp file older than this is stale even if its process id was reused by another program."""


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine with this id still runs (True when unsure)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would send Ctrl+C there; the age check decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but not ours (or the platform cannot tell): keep its file
    return True


def create_temp(folder: Path, suffix: str = "") -> tuple[int, Path]:
    """A new, empty file in ``folder`` (open descriptor and path), never an existing one."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=suffix, dir=folder)
    return fd, Path(name)


def is_stale(path: Path, *, now: float | None = None) -> bool:
    """A temp file whose writer is gone (or that is older than :data:`STALE_TEMP_AGE_S`)."""
    pid_text = path.name[len(TEMP_PREFIX) :].split("-", 1)[0]
    if not pid_text.isdigit() or not pid_alive(int(pid_text)):
        return True
    try:
        age = (now or time.time()) - path.lstat().st_mtime
    except OSError:
        return False
    return age > STALE_TEMP_AGE_S


def temp_files(folder: Path, *, recursive: bool = False, suffix: str = "") -> Iterator[Path]:
    """Temp files (not links, not folders) under ``folder`` whose names end in ``suffix``."""
    if not folder.is_dir():
        return
    for entry in os.scandir(folder):
        name = entry.name
        if name.startswith(TEMP_PREFIX) and name.endswith(suffix):
            if entry.is_file(follow_symlinks=False):
                yield Path(entry.path)
        elif recursive and entry.is_dir(follow_symlinks=False):
            yield from temp_files(Path(entry.path), recursive=True, suffix=suffix)


def remove_stale(folder: Path, *, recursive: bool = False, suffix: str = "") -> int:
    """Delete the stale temp files under ``folder``; return how many."""
    now = time.time()
    removed = 0
    for path in list(temp_files(folder, recursive=recursive, suffix=suffix)):
        if is_stale(path, now=now):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
