"""``iad-workstation import DIR``: bring a folder of inspection images into the store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from workstation.cli.storeargs import add_db_option, store_path

if TYPE_CHECKING:
    from workstation.services.importing import ImportReport


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import a folder (MVTec AD, anomalib Folder, COCO or flat images)",
        description="Import images (and ground-truth masks) into the store. Importing the "
        "same folder again adds only new files.",
    )
    parser.add_argument("dir", metavar="DIR", help="dataset folder")
    parser.add_argument("--product", help="product name (default: the folder name)")
    add_db_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workstation.cli.progress import progress_bar
    from workstation.services.importing import import_directory
    from workstation.store.repository import Store

    with Store.open(store_path(args)) as store:
        report = import_directory(
            store, args.dir, product=args.product, progress=progress_bar(0, "importing")
        )
        print_report(report, store.path)
    return 1 if report.failures and not report.added and not report.existing else 0


def print_report(report: ImportReport, db: Path) -> None:
    for item in report.products:
        print(
            f"{item.product.name} ({item.layout}): {item.added} new, {item.existing} already "
            f"in the store, {item.masks} ground-truth masks"
        )
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.failures:
        print(f"{len(report.failures)} file(s) not imported:", file=sys.stderr)
        for failure in report.failures:
            print(f"  {failure.reason}", file=sys.stderr)
    if report.cancelled:
        print("cancelled: the images imported so far are kept", file=sys.stderr)
    print(f"store: {db}")
