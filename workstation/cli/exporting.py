"""``iad-workstation export``: write a product as MVTec, COCO (RLE masks) or chat JSONL."""

from __future__ import annotations

import argparse

from workstation.cli.storeargs import add_db_option, store_path

FORMATS = ("mvtec", "coco", "jsonl")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a product (mvtec | coco | jsonl)",
        description="Export the final labels and masks of a product (inspector edits win "
        "over ground truth), or JSON-lines chat pairs for VLM fine-tuning.",
    )
    parser.add_argument("out", metavar="OUT", help="output folder (jsonl: folder or .jsonl file)")
    parser.add_argument("--product", required=True, help="product name")
    parser.add_argument("--format", choices=FORMATS, default="mvtec", help="default: mvtec")
    add_db_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workstation.cli.progress import progress_bar
    from workstation.core.errors import UserError
    from workstation.datasets.formats import export_product
    from workstation.store.repository import Store

    path = store_path(args)
    if not path.exists():
        raise UserError(f"no store at {path}; import a folder first (iad-workstation import DIR)")
    with Store.open(path) as store:
        report = export_product(
            store,
            args.product,
            args.out,
            format=args.format,
            progress=progress_bar(0, f"exporting {args.format}"),
        )
    what = "chat pairs" if args.format == "jsonl" else "images"
    print(f"wrote {report.images} {what} and {report.masks} masks to {report.path}")
    return 0
