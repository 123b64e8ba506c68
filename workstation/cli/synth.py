"""``iad-workstation synth --product NAME --count N OUT``: look at the synthetic defects.

The self-taught expert learns from defects painted into the product's own normal images;
this writes a sample of them in MVTec layout (``train/good`` the normals at the working
size, ``test/<family>`` the painted images, ``ground_truth/<family>`` their exact masks)
so that an engineer can check that they look like plausible defects of this product, and
can even run ``eval`` on them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from workstation.cli.families import add_families_option, parse_families
from workstation.cli.storeargs import add_db_option, store_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write synthetic defects of a product (what the self-taught expert learns from)",
        description="Paint N synthetic defects into the product's normal images at the "
        "experts' working size and write them in MVTec layout under OUT/<product>/.",
    )
    parser.add_argument("out", type=Path, metavar="OUT", help="folder to write into")
    parser.add_argument("--product", required=True, help="product name")
    parser.add_argument("--count", type=int, default=24, help="defect images to write")
    add_families_option(parser)
    parser.add_argument("--seed", type=int, default=0)
    add_db_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workstation.cli.progress import progress_bar
    from workstation.config import load_settings
    from workstation.core.errors import UserError
    from workstation.services.synthesis import write_synthetic_examples
    from workstation.store.repository import Store

    if args.count < 1:
        raise UserError("--count must be at least 1")
    db = store_path(args)
    if not db.is_file():
        raise UserError(f"no store at {db}; import the product's images first or pass --db")
    families = parse_families(args.families)
    store = Store.open(db)
    try:
        summary = write_synthetic_examples(
            store,
            args.product,
            args.out,
            count=args.count,
            families=families,
            image_size=load_settings().experts.image_size,
            seed=args.seed,
            progress=progress_bar(args.count, "painting"),
        )
    finally:
        store.close()
    for family, written in sorted(summary.counts.items()):
        print(f"  {family:18s} {written:4d}")
    print(f"{sum(summary.counts.values())} synthetic defects written to {summary.root}")
    return 0
