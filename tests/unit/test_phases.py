"""Progress in phases: each line names its phase and, once the pace is known, time left."""

from __future__ import annotations

from workstation.services.phases import PhaseClock, format_seconds


def test_each_phase_reports_with_an_estimate_and_fast_reports_are_thinned() -> None:
    lines: list[tuple[int, int, str]] = []
    now = [0.0]
    clock = PhaseClock(lambda d, t, m: lines.append((d, t, m)), clock=lambda: now[0])
    clock(0, 10, "features")
    now[0] = 2.0
    clock(2, 10, "features")
    assert lines[-1][2] == "features 2 / 10 · about 8 s left"
    now[0] = 2.05
    clock(3, 10, "features")  # 50 ms later: dropped
    assert len(lines) == 2
    clock(10, 10, "features")  # the last one always comes, without an estimate
    assert lines[-1][2] == "features 10 / 10"
    clock(0, 0, "loading")
    assert lines[-1][2] == "loading…"


def test_format_seconds() -> None:
    assert format_seconds(0.2) == "1 s"
    assert format_seconds(75) == "1 min 15 s"
    assert format_seconds(1300) == "21 min"
