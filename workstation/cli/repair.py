"""``iad-workstation repair NEW [--db S]``: salvage a damaged store into a new store.

The damaged store is only read (see ``store.salvage``); the new one is what to use from
then on. Exit code 1 when something could not be salvaged, so a script notices.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from workstation.cli.storeargs import add_db_option, store_path
from workstation.paths import expand_user

if TYPE_CHECKING:
    from workstation.store.salvage import SalvageReport


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "repair",
        aliases=["recover"],
        help="salvage a damaged store into a new store (the original is not changed)",
        description="Copy every readable row, array and model folder of the store (--db) "
        "into the new store NEW, created from scratch. The damaged store is only read. "
        "Exits 1 when something could not be salvaged.",
    )
    parser.add_argument("new", metavar="NEW", help="file name of the new store (must not exist)")
    add_db_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workstation.store.salvage import salvage_store

    report = salvage_store(store_path(args), expand_user(args.new))
    print_report(report)
    return 0 if report.complete else 1


def print_report(report: SalvageReport) -> None:
    print(f"salvaged {report.source} into {report.target} (the original was not changed)")
    for table in report.tables:
        if not (table.copied or table.unreadable or table.left_out or table.tail_unknown):
            continue
        parts = [f"{table.copied} copied"]
        if table.recovered:
            parts.append(f"{table.recovered} of them by sqlite3 .recover")
        if table.rebuilt:
            parts.append(
                f"{table.rebuilt} of them rebuilt from its indexes (columns no index holds "
                "are empty"
                + (
                    f"; {table.files_found} image files found again by hash)"
                    if table.table == "images"
                    else ")"
                )
            )
        if table.unreadable:
            parts.append(f"{table.unreadable} unreadable")
        if table.tail_unknown:
            parts.append("the end of the table is unreadable (rows there cannot be counted)")
        if table.left_out:
            parts.append(f"{table.left_out} left out (they need a lost row or array)")
        print(f"  {table.table}: {', '.join(parts)}")
    print(f"  arrays: {report.arrays_copied} copied, {report.arrays_lost} lost")
    print(f"  model folders: {report.models_copied} copied, {report.models_lost} missing")
    if report.schema_mended:
        print(f"  {report.schema_mended} damaged schema entries were put right first")
    copied, lost = report.rows
    print(f"  rows: {copied} saved, {lost} known lost ({copied / max(copied + lost, 1):.1%} saved)")
    print(f"  {report.recover_note}")
    if report.complete:
        print(f"nothing was lost; use the new store: --db {report.target}")
    else:
        print(
            f"some data could not be salvaged (above); check the new store with "
            f"`iad-workstation doctor --db {report.target}`, then use it with --db"
        )
