"""Entry point of the frozen application (PyInstaller starts this file, not ``python -m``).

A frozen app has no separate Python interpreter: ``sys.executable`` is the app itself. Code
that starts a child Python (training rounds: ``[sys.executable, "-m", "training", ...]``;
the doctor's Qt probe: ``[sys.executable, "-m", "workstation", ...]``) therefore reaches this
file with ``-m MODULE`` in argv, and it is run here exactly as ``python -m`` would, so the
same command line works from a checkout and from the installed app.

``IAD_QUIT_AFTER_FIRST_WINDOW=<epoch seconds>`` makes the GUI print how long after that
moment its first window was shown, then quit: ``packaging/smoke.sh`` measures cold start
with it (also from a checkout: ``python packaging/entry.py``).
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
import time

CHILD_MODULES = ("workstation", "training")
"""Modules a child process may ask for with ``-m``; anything else is an ordinary CLI arg."""
FIRST_WINDOW_ENV = "IAD_QUIT_AFTER_FIRST_WINDOW"


def quit_after_first_window(started: float) -> None:
    """Watch the application for its first top-level window; report the time and quit."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    from workstation.gui.launch import application

    app = application()

    def report() -> None:
        print(f"first window after {time.time() - started:.2f} s", flush=True)
        app.quit()

    class FirstWindow(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Show and getattr(watched, "isWindow", bool)():
                app.removeEventFilter(self)
                # queued behind the window's first expose/paint events
                QTimer.singleShot(0, report)
            return False

    app.installEventFilter(FirstWindow(app))


def run() -> int:
    multiprocessing.freeze_support()
    if len(sys.argv) >= 3 and sys.argv[1] == "-m" and sys.argv[2] in CHILD_MODULES:
        module = sys.argv[2]
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    if os.environ.get(FIRST_WINDOW_ENV) and len(sys.argv) == 1:
        quit_after_first_window(float(os.environ[FIRST_WINDOW_ENV]))
    from workstation.__main__ import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
