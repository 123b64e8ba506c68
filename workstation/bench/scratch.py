"""The scratch folder of a benchmark (``--workdir`` when given and kept, else a temp
folder removed afterwards) and its ending: a table printed, the numbers as JSON."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def in_scratch(workdir: str | None, prefix: str, work: Callable[[Path], T]) -> T:
    if workdir:
        folder = Path(workdir)
        folder.mkdir(parents=True, exist_ok=True)
        return work(folder)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        return work(Path(tmp))


def emit(lines: list[str], numbers: object, json_out: str | None) -> int:
    """Print the table ``lines``; write ``numbers`` to ``--json`` when asked."""
    print("\n".join(lines))
    if json_out:
        Path(json_out).write_text(json.dumps(numbers, indent=2), encoding="utf-8")
    return 0
