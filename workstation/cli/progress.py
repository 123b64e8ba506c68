"""A small text progress bar on stderr (no dependency), shared by the CLI commands."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 30
REDRAW_S = 0.1


def progress_bar(
    total: int, label: str, *, stream: TextIO | None = None
) -> Callable[[int, int], None]:
    """Return ``update(done, total)``; redraws in place on a terminal, else one final line.

    ``total`` may change between calls (the callback's own ``total`` wins), which lets
    a use case discover its total after it started.
    """
    out = stream or sys.stderr
    interactive = out.isatty()
    started = time.monotonic()
    last_draw = 0.0

    def update(done: int, current_total: int = total) -> None:
        nonlocal last_draw
        count = max(current_total, 1)
        finished = done >= current_total
        now = time.monotonic()
        if not finished and (not interactive or now - last_draw < REDRAW_S):
            return
        last_draw = now
        filled = int(WIDTH * min(done, count) / count)
        elapsed = now - started
        rate = f" {done / elapsed:.0f}/s" if elapsed > 0.5 and done else ""
        line = f"{label} [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{current_total}{rate}"
        if interactive:
            out.write("\r" + line + ("\n" if finished else ""))
        else:
            out.write(line + "\n")
        out.flush()

    return update


def staged_progress_bars(label: str) -> Callable[[int, int, str], None]:
    """``update(done, total, stage)``: one bar per stage of a multi-stage use case."""
    bars: dict[str, Callable[[int, int], None]] = {}

    def update(done: int, total: int, stage: str) -> None:
        if stage not in bars:
            bars[stage] = progress_bar(total, f"{label}: {stage}")
        bars[stage](done, total)

    return update
