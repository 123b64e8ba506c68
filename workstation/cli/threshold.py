"""``iad-workstation models threshold``: see or move a product's decision threshold.

Without ``--set`` it prints the threshold, what it flags (images flagged, known normals
flagged, known defects missed) and who set it when; ``--at`` previews another value;
``--set`` stores a new one with its author (``services.threshold``).
"""

from __future__ import annotations

import argparse
import json

from workstation.cli.storeargs import add_db_option


def register_threshold(inner: argparse._SubParsersAction) -> None:
    parser = inner.add_parser(
        "threshold", help="a product's decision threshold: what it flags, who set it; move it"
    )
    parser.add_argument("--product", required=True)
    parser.add_argument("--at", type=float, help="preview what this threshold would flag")
    parser.add_argument("--set", type=float, dest="value", help="store this threshold")
    parser.add_argument("--author", help="who sets it (default: the reviewer setting or login)")
    parser.add_argument("--reason", default="", help="why, for the audit trail")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_db_option(parser)
    parser.set_defaults(handler=_threshold)


def _author(given: str | None) -> str:
    import getpass

    from workstation.config import load_settings

    if given:
        return given
    reviewer = load_settings().review.reviewer
    try:
        return reviewer or getpass.getuser()
    except (KeyError, OSError):
        return "engineer"


def _threshold(args: argparse.Namespace) -> int:
    from workstation.cli.model_versions import open_store
    from workstation.services.threshold import counts_at, score_groups, set_threshold

    store = open_store(args)
    try:
        product = store.get_product(args.product)
        if args.value is not None:
            set_threshold(
                store, product, args.value, author=_author(args.author), reason=args.reason
            )
            product = store.get_product(product.id)
        groups = score_groups(store, product)
        level = args.at if args.at is not None else groups.threshold
        counts = counts_at(groups, level)
        history = store.threshold_history(product.id)
        if args.json:
            print(
                json.dumps(
                    {
                        "product": product.name,
                        "threshold": groups.threshold,
                        "counts": counts.__dict__,
                        "history": [h.__dict__ for h in history],
                    },
                    indent=2,
                )
            )
            return 0
        print(f"{product.name}: threshold {groups.threshold:.3f} (calibrated default 1.000)")
        print("  " + counts.summary())
        for h in history:
            why = f" ({h.reason})" if h.reason else ""
            when = h.created_at[:19].replace("T", " ")
            print(f"  {when}  {h.threshold:.3f}  by {h.author}  {h.model_version}{why}")
    finally:
        store.close()
    return 0
