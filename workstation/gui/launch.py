"""Starting the desktop application (``iad-workstation`` with no command, or ``demo``)."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtWidgets import QApplication

from workstation.gui.theme import app_icon, apply_theme


def application() -> QApplication:
    """The process's QApplication, created once with the workstation's name and theme."""
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
        app.setWindowIcon(app_icon())
        app.setProperty("iad_themed", True)
    return app


def launch_gui(db: str | Path | None = None, product: str | None = None) -> int:
    """Open the review window on ``db`` (default store) at ``product`` (default: last used)."""
    from workstation.faults import start_log_file
    from workstation.gui.app import build_workstation
    from workstation.gui.fault_dialog import install_fault_hook, show_fault
    from workstation.gui.main_window import MainWindow
    from workstation.paths import default_db_path

    app = application()
    start_log_file()
    try:
        workstation = build_workstation(db)
    except Exception as exc:  # no window yet: say it in a dialog, then the CLI's line
        show_fault(None, exc, Path(db) if db else default_db_path())
        raise
    restore_hook = lambda: None  # noqa: E731
    try:
        window = MainWindow(workstation, product=product)
        restore_hook = install_fault_hook(window, workstation.store.path)
        window.show()
        workstation.warm_up_model_lane()
        return int(app.exec())
    finally:
        restore_hook()
        workstation.close()
