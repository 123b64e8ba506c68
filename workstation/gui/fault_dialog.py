"""Faults in the GUI: one line in a dialog, the trace in the log file, the window kept.

Qt calls ``sys.excepthook`` for an exception that escapes a slot and then carries on, so
a hook that shows a dialog is the GUI's error boundary: a read-only store or a full disk
met while saving is said in words, and the work on screen stays where it was.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from PySide6.QtWidgets import QMessageBox, QWidget

from workstation.faults import user_message

TITLE = "IAD Workstation"


def show_fault(parent: QWidget | None, exc: BaseException, store: Path | None) -> str:
    """Show the one-line message for ``exc`` in a warning dialog; return the line."""
    line, _ = user_message(exc, store=store)
    QMessageBox.warning(parent, TITLE, line)
    return line


def install_fault_hook(parent: QWidget, store: Path | None) -> Callable[[], None]:
    """Route uncaught exceptions on the GUI thread to :func:`show_fault`; returns the
    function that puts the previous hook back."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            previous(kind, exc, tb)
            return
        show_fault(parent, exc.with_traceback(tb), store)

    sys.excepthook = hook

    def restore() -> None:
        sys.excepthook = previous

    return restore
