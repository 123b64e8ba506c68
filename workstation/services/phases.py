"""Progress of a long job in named phases, each with its time left.

Onboarding runs several phases of very different length (reading images, features,
memory bank, calibration, scoring, drafting); a single bar that sat on "Starting…" or on
"fitting 1 / 2" for minutes told the engineer nothing. :class:`PhaseClock` turns each
``(done, total, phase)`` report into one line such as
``features 12 / 40 · about 20 s left``, estimating from the phase's own pace, and drops
reports that come faster than a person can read (a coreset step every few milliseconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Progress = Callable[[int, int, str], None]
MIN_INTERVAL_S = 0.2
"""Reports of the same phase closer together than this are dropped (not the last one)."""


def format_seconds(seconds: float) -> str:
    """About how long, in the unit a person would say."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 10 else f"{minutes} min"


@dataclass
class PhaseClock:
    """Wraps a ``Progress`` callback; see the module docstring."""

    report: Progress
    clock: Callable[[], float] = time.monotonic
    min_interval: float = MIN_INTERVAL_S
    phase: str = ""
    _started: float = 0.0
    _start_done: int = 0
    _last_sent: float = field(default=-1e9)

    def __call__(self, done: int, total: int, phase: str) -> None:
        now = self.clock()
        new_phase = phase != self.phase
        if new_phase:
            self.phase, self._started, self._start_done = phase, now, done
        elif done < total and now - self._last_sent < self.min_interval:
            return
        self._last_sent = now
        self.report(done, total, self.line(done, total, now))

    def line(self, done: int, total: int, now: float) -> str:
        """``phase done / total · about N s left`` (the estimate once the pace is known)."""
        text = f"{self.phase} {done} / {total}" if total else f"{self.phase}…"
        moved = done - self._start_done
        if total and moved > 0 and done < total:
            left = (now - self._started) / moved * (total - done)
            text += f" · about {format_seconds(left)} left"
        return text
