"""The lane: stale results are dropped, cancel reaches the caller, shutdown stops the thread."""

from __future__ import annotations

import threading

import pytest

from workstation.core.errors import CancelledError, UserError
from workstation.gui.launch import application
from workstation.gui.workers import Lane


@pytest.fixture
def lane(qtbot):  # type: ignore[no-untyped-def]
    application()
    lane = Lane("test")
    yield lane
    assert lane.shutdown()
    assert not lane.is_running()


def test_newer_request_on_a_channel_drops_the_older_result(qtbot, lane) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    results: list[str] = []
    lane.submit(
        lambda p, c: gate.wait(5) and "old", channel="view", image_id=1, on_result=results.append
    )
    lane.submit(lambda p, c: "new", channel="view", image_id=2, on_result=results.append)
    gate.set()
    qtbot.waitUntil(lambda: not lane.busy)
    assert results == ["new"]


def test_cancel_progress_and_errors_reach_the_caller(qtbot, lane) -> None:  # type: ignore[no-untyped-def]
    seen: list[object] = []

    def slow(progress, cancel):  # type: ignore[no-untyped-def]
        for i in range(1000):
            progress(i, 1000, "working")
            cancel.event.wait(0.005)
        return "finished"

    lane.submit(
        slow,
        channel="job",
        on_result=seen.append,
        on_error=seen.append,
        on_progress=lambda d, t, m: seen.append(m),
    )
    qtbot.waitUntil(lambda: "working" in seen)
    lane.cancel("job")
    qtbot.waitUntil(lambda: not lane.busy)
    assert isinstance(seen[-1], CancelledError) and "finished" not in seen

    def bad(progress, cancel):  # type: ignore[no-untyped-def]
        raise UserError("no such folder")

    errors: list[BaseException] = []
    lane.submit(bad, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors))
    assert str(errors[0]) == "no such folder"


def test_shutdown_cancels_inference_drops_read_ahead_and_keeps_writes(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Quitting waits for no model work: only the queued store writes still run."""
    application()
    lane = Lane("closing")
    started = threading.Event()
    ran: list[str] = []

    def inference(progress, cancel):  # type: ignore[no-untyped-def]
        started.set()
        cancel.event.wait(60)  # a long job that checks its cancel token
        ran.append("inference stopped")

    lane.submit(inference, channel="inspect")
    lane.submit(lambda p, c: ran.append("read-ahead"))
    lane.submit(lambda p, c: ran.append("write"), essential=True)
    assert started.wait(10)
    assert lane.shutdown(20000)
    assert not lane.is_running()
    assert ran == ["inference stopped", "write"]
