"""Faults in the GUI: a dialog with one line, the trace in the log, the window kept open."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from tests.gui.conftest import wait_idle
from workstation.core.errors import UserError
from workstation.faults import log_file, start_log_file


@pytest.fixture
def dialogs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Lines shown in warning dialogs (recorded instead of blocking on a modal box)."""
    shown: list[str] = []

    def warning(_parent: object, _title: str, text: str, *args: object) -> None:
        shown.append(text)

    monkeypatch.setattr("PySide6.QtWidgets.QMessageBox.warning", warning)
    return shown


def test_a_read_only_store_while_reviewing_shows_a_dialog_and_keeps_the_window(
    qtbot, window, dialogs, monkeypatch, screenshot
) -> None:  # type: ignore[no-untyped-def]
    # Simulated at the store's SQLite layer: the connection is open already, and the real
    # fault (the file made read-only under a running program) shows up exactly like this.
    def read_only(*_args: object, **_kwargs: object) -> None:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr("workstation.services.review.ReviewService.review", read_only)
    start_log_file()  # as launch_gui does
    reviewed = window.controller.current.content.image_id
    window.controller.review("normal")
    wait_idle(qtbot, window.ws)
    qtbot.waitUntil(lambda: bool(dialogs), timeout=5000)
    store = str(window.ws.store.path)
    assert len(dialogs) == 1 and "\n" not in dialogs[0]
    assert dialogs[0].startswith("could not save the review: the store ")
    assert store in dialogs[0] and "is read-only" in dialogs[0]
    assert "Traceback" not in dialogs[0]
    assert window.isVisible() and window.controller.current is not None
    # The list no longer claims a verdict that was never saved.
    model = window.controller.model
    row = model.find_row(reviewed)
    assert row is not None and model.row_at(row).review_verdict is None
    assert log_file().read_text().count("OperationalError: attempt to write") == 1
    screenshot(window, "fault-read-only")


def test_an_exception_escaping_a_slot_becomes_a_dialog(window, dialogs) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.fault_dialog import install_fault_hook

    restore = install_fault_hook(window, window.ws.store.path)
    try:
        target = Path("/tmp/export-target")
        error = PermissionError(13, "Permission denied", str(target))
        sys.excepthook(PermissionError, error, None)
        sys.excepthook(ZeroDivisionError, ZeroDivisionError("a bug"), None)
    finally:
        restore()
    assert dialogs[0].startswith(f"permission denied on {target}")
    assert dialogs[1].startswith("unexpected ZeroDivisionError: a bug")
    assert str(log_file()) in dialogs[1]
    assert window.isVisible()
    assert "ZeroDivisionError: a bug" in log_file().read_text()


def test_a_store_that_cannot_open_is_said_in_a_dialog_before_any_window(
    qtbot, tmp_path, dialogs
) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.launch import launch_gui

    notes = tmp_path / "notes.txt"
    notes.write_text("not a store")
    with pytest.raises(UserError, match="not a workstation store"):
        launch_gui(db=notes)
    assert len(dialogs) == 1 and str(notes) in dialogs[0]
