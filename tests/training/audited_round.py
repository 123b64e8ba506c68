"""``python -m training`` for torchrun, with a record of what each rank writes.

An audit hook (PEP 578) notes every file opened for writing, every folder made and every
rename or removal under ``IAD_AUDIT_ROOT``; at exit the rank writes the list to
``IAD_AUDIT_LOG/rank<RANK>.json`` (outside the watched folder). The distributed tests run
the round through this script to check that rank 0 alone writes.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CHANGES = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree"}


def _record(root: str, log: Path, rank: str) -> None:
    written: list[str] = []

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and bool(flags & WRITE_FLAGS)
            )
        else:
            path, writing = (args[0] if args else None), event in CHANGES
        if writing and isinstance(path, str | os.PathLike) and os.fspath(path).startswith(root):
            written.append(f"{event} {os.fspath(path)}")

    sys.addaudithook(hook)

    def save() -> None:
        log.mkdir(parents=True, exist_ok=True)
        (log / f"rank{rank}.json").write_text(json.dumps(written), encoding="utf-8")

    atexit.register(save)


if __name__ == "__main__":
    _record(
        os.environ["IAD_AUDIT_ROOT"], Path(os.environ["IAD_AUDIT_LOG"]), os.environ["RANK"]
    )
    from training.__main__ import main

    sys.exit(main())
