"""The ``--db`` option, accepted both before and after the subcommand name."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from workstation.paths import default_db_path, expand_user

if TYPE_CHECKING:
    from workstation.store.repository import Store


def add_db_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS keeps the root parser's value when the subcommand does not repeat it.
    parser.add_argument(
        "--db", default=argparse.SUPPRESS, help="store file (default: the user data directory)"
    )


def store_path(args: argparse.Namespace) -> Path:
    """The store a command works on: ``--db``, else the command's own default (the demo
    has its own store, set with ``set_defaults(default_store=...)``), else the user's."""
    value = getattr(args, "db", None)
    if value:
        return expand_user(value)
    return getattr(args, "default_store", default_db_path)()



def open_existing_store(args: argparse.Namespace) -> Store:
    """The command's store, which must exist already (reading commands never create one)."""
    from workstation.core.errors import UserError
    from workstation.store.repository import Store

    path = store_path(args)
    if not path.is_file():
        raise UserError(f"no store at {path}; pass --db")
    return Store.open(path)
