"""``iad-workstation sync export|import``: carry a product's feedback between stations."""

from __future__ import annotations

import argparse
import json

from workstation.cli.storeargs import add_db_option, open_existing_store, store_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sync", help="feedback bundles between stations (export | import)"
    )
    inner = parser.add_subparsers(dest="sync_command", metavar="ACTION", required=True)
    export = inner.add_parser(
        "export",
        help="write a product's images and every mask, text and verdict revision to a zip",
        description="Write a feedback bundle: the product profile, its images (by content "
        "hash) and every revision with author, time, station and model version. Prints the "
        "stamp to pass as --since next time.",
    )
    export.add_argument("out", metavar="OUT.zip")
    export.add_argument("--product", required=True, help="product name")
    export.add_argument(
        "--since", metavar="STAMP", help="only what entered this store after this ISO time"
    )
    add_db_option(export)
    export.set_defaults(handler=_export)
    merge = inner.add_parser(
        "import",
        help="merge a feedback bundle (idempotent; refused whole when damaged)",
        description="Verify the whole bundle, then merge it in one transaction: revisions "
        "are appended, known ones skipped, the latest review wins and conflicting verdicts "
        "are flagged in the review queue.",
    )
    merge.add_argument("bundle", metavar="IN.zip")
    add_db_option(merge)
    merge.set_defaults(handler=_import)


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workstation.cli.progress import progress_bar
    from workstation.sync.feedback import export_feedback

    with open_existing_store(args) as store:
        report = export_feedback(
            store,
            args.product,
            Path(args.out),
            since=args.since,
            progress=progress_bar(0, "exporting feedback"),
        )
    print(
        f"wrote {report.images} images, {report.revisions} revisions and {report.masks} masks "
        f"of {report.product} to {report.path}; next time: --since {report.stamp}"
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workstation.cli.progress import progress_bar
    from workstation.store.repository import Store
    from workstation.sync.feedback import import_feedback

    with Store.open(store_path(args)) as store:
        report = import_feedback(
            store, Path(args.bundle), progress=progress_bar(0, "importing feedback")
        )
    summary = {
        "product": report.product,
        "product_created": report.product_created,
        "images_added": report.images_added,
        "images_known": report.images_known,
        "revisions_added": report.added,
        "revisions_known": report.known,
        "conflicts": report.conflicts,
    }
    if report.profile_differs:
        summary["note"] = "the bundle's product profile differs; this station kept its own"
    print(json.dumps(summary))
    return 0
