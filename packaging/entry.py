"""Entry point of the frozen application (PyInstaller starts this file, not ``python -m``).

A frozen app has no separate Python interpreter: ``sys.executable`` is the app itself. Code
that starts a child Python (training rounds: ``[sys.executable, "-m", "training", ...]``;
the doctor's Qt probe: ``[sys.executable, "-m", "workstation", ...]``) therefore reaches this
file with ``-m MODULE`` in argv, and it is run here exactly as ``python -m`` would, so the
same command line works from a checkout and from the installed app.
"""

from __future__ import annotations

import multiprocessing
import runpy
import sys

CHILD_MODULES = ("workstation", "training")
"""Modules a child process may ask for with ``-m``; anything else is an ordinary CLI arg."""


def run() -> int:
    multiprocessing.freeze_support()
    if len(sys.argv) >= 3 and sys.argv[1] == "-m" and sys.argv[2] in CHILD_MODULES:
        module = sys.argv[2]
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    from workstation.__main__ import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
