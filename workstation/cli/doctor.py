"""``iad-workstation doctor [--db S] [--deep] [--json]``: is this installation healthy, is
its store intact, and what is missing?

The root ``--self-check`` flag (used by the frozen app's smoke test) calls
:func:`run_doctor` too. Exit code 1 only when something required is broken.
"""

from __future__ import annotations

import argparse
import json
import sys

from workstation.cli.storeargs import add_db_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check Python, torch/CUDA, Qt, OpenCV, the store, disk and models",
        description="Check this installation and its store (pages, write access, array and "
        "model hashes; read-only) and say how to fix each problem. Exits 1 when something "
        "required is broken or the store is damaged; missing optional models are listed "
        "with the command that brings them.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="re-hash every installed model bundle file (slow for VLMs)",
    )
    parser.add_argument(
        "--deep",
        action="store_true",
        help="full SQLite integrity check of the store and a re-hash of every stored array",
    )
    add_db_option(parser)
    # Internal: the doctor starts itself with this flag in a child process to see whether a
    # Qt GUI application can start (a broken platform plugin aborts the whole process).
    parser.add_argument("--qt-probe", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=run_doctor)


def qt_probe() -> int:
    """Open (and immediately drop) a QGuiApplication; print the platform plugin in use.

    Qt is imported only here, in a throwaway child process started by the doctor.
    """
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication(["iad-workstation-qt-probe"])
    print(f"platform={app.platformName()}", flush=True)
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    if getattr(args, "qt_probe", False):
        return qt_probe()
    from workstation.doctor import (
        build_context,
        exit_code,
        format_report,
        report_dicts,
        run_checks,
    )

    context, results = build_context(
        getattr(args, "db", None),
        verify_hashes=getattr(args, "verify", False),
        deep=getattr(args, "deep", False),
    )
    results += run_checks(context)
    code = exit_code(results)
    if getattr(args, "json", False):
        json.dump({"ok": code == 0, "checks": report_dicts(results)}, sys.stdout, indent=2)
        print()
    else:
        print(format_report(results))
    return code
