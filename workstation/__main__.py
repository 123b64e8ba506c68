"""``iad-workstation``: with no arguments it opens the GUI; subcommands do the rest."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from workstation import __version__
from workstation.cli import COMMAND_MODULES
from workstation.core.errors import CancelledError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iad-workstation",
        description="Labeling and active-learning workstation for industrial anomaly detection. "
        "Run with no command to open the review window.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--db", help="store file (default: the user data directory)")
    parser.add_argument(
        "--self-check", action="store_true", help="run the health check (same as `doctor`)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"workstation.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if argv is not None and any("\x00" in arg for arg in argv):
        # A shell cannot pass one, but a caller of main() can; no path may hold it.
        print("error: an argument holds a NUL character, which no file name can", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        if args.self_check:
            from workstation.cli.doctor import run_doctor

            return run_doctor(args)
        _limits_from_settings()
        if args.command is None:
            from workstation.gui.launch import launch_gui

            return launch_gui(db=args.db)
        return int(args.handler(args) or 0)
    except CancelledError:
        print("cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the boundary: no traceback ever reaches the terminal
        from workstation.cli.storeargs import store_path
        from workstation.faults import user_message

        line, code = user_message(exc, store=store_path(args))
        print("error: " + line.replace("\n", " "), file=sys.stderr)
        return code


def _limits_from_settings() -> None:
    """Put the ``[limits]`` settings in force before any bundle or image is read; a bad
    settings file is reported by the commands that read it (and ``doctor``)."""
    from contextlib import suppress

    from workstation.config import load_settings
    from workstation.core.errors import UserError

    with suppress(UserError):
        load_settings()


if __name__ == "__main__":
    sys.exit(main())
