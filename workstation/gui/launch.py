"""Starting the desktop application (``iad-workstation`` with no command, or ``demo``)."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtWidgets import QApplication

from workstation.gui.theme import apply_theme


def guard_none_refcount() -> None:
    """Work around a PySide6 6.12 bug on Python < 3.12 that would crash a long session.

    Every call of a Qt method that returns nothing (``update()``, ``setText()``,
    ``processEvents()``, ...) drops one reference to ``None`` it never took, so after a few
    thousand calls Python aborts with "deallocating None". Python 3.12 made ``None``
    immortal; here its count is raised far out of reach once, which has the same effect.
    """
    if sys.version_info >= (3, 12) or getattr(guard_none_refcount, "done", False):
        return
    import ctypes

    ctypes.c_ssize_t.from_address(id(None)).value += 1 << 40
    guard_none_refcount.done = True  # type: ignore[attr-defined]


def application() -> QApplication:
    """The process's QApplication, created once with the workstation's name and theme."""
    guard_none_refcount()
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    # workers hand the GIL back sooner, so painting never waits long behind Python code
    sys.setswitchinterval(0.002)
    if not app.property("iad_themed"):  # also when a test harness made the QApplication
        app.setApplicationName("IAD Workstation")
        app.setOrganizationName("iad-workstation")
        apply_theme(app)
        app.setProperty("iad_themed", True)
    return app


def launch_gui(db: str | Path | None = None, product: str | None = None) -> int:
    """Open the review window on ``db`` (default store) at ``product`` (default: last used)."""
    from workstation.app import build_workstation
    from workstation.gui.main_window import MainWindow

    app = application()
    workstation = build_workstation(db)
    try:
        window = MainWindow(workstation, product=product)
        window.show()
        return int(app.exec())
    finally:
        workstation.close()
