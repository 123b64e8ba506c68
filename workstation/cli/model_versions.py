"""``iad-workstation models promote|rollback``: move trained versions in and out of use.

Registered into ``workstation.cli.models`` (its ``SUBCOMMANDS``), next to list/install.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from workstation.cli.storeargs import add_db_option, store_path
from workstation.core import kinds

if TYPE_CHECKING:
    from workstation.store.repository import Store


def register_promote(inner: argparse._SubParsersAction) -> None:
    parser = inner.add_parser(
        "promote", help="make a trained model version (e.g. a gate candidate) the active one"
    )
    parser.add_argument("version", help="model version name (see `models versions`)")
    add_db_option(parser)
    parser.set_defaults(handler=_promote)


def register_rollback(inner: argparse._SubParsersAction) -> None:
    parser = inner.add_parser(
        "rollback", help="retire the active trained version and reactivate its parent"
    )
    parser.add_argument("--product", required=True)
    parser.add_argument("--kind", choices=kinds.names(), default="adapter")
    add_db_option(parser)
    parser.set_defaults(handler=_rollback)


def register_versions(inner: argparse._SubParsersAction) -> None:
    parser = inner.add_parser("versions", help="a product's trained model versions")
    parser.add_argument("--product", required=True)
    add_db_option(parser)
    parser.set_defaults(handler=_versions)


def open_store(args: argparse.Namespace) -> Store:
    from workstation.core.errors import UserError
    from workstation.store.repository import Store

    db = store_path(args)
    if not db.is_file():
        raise UserError(f"no store at {db}; pass --db")
    return Store.open(db)


def _promote(args: argparse.Namespace) -> int:
    from workstation.services.versions import promote

    store = open_store(args)
    try:
        version = promote(store, args.version)
        if version.kind == "types":  # kind: types (issue 22): drafts follow the head
            _redraft(store, version.product_id)
        print(json.dumps({"active": version.name, "kind": version.kind}))
    finally:
        store.close()
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from workstation.services.versions import rollback

    store = open_store(args)
    try:
        active = rollback(store, args.product, args.kind)
        if args.kind == "types":  # kind: types (issue 22): drafts follow the head
            _redraft(store, args.product)
        print(json.dumps({"active": active.name if active else None, "kind": args.kind}))
    finally:
        store.close()
    return 0


def _redraft(store: Store, product: str | int) -> None:
    """Another type head is active: rewrite the unreviewed drafts in its words (the GUI
    does the same on its model lane, ``gui/type_drafts.py``)."""
    from workstation.services.typed_drafts import redraft_unreviewed

    redraft_unreviewed(store, store.get_product(product))


def _versions(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        product = store.get_product(args.product)
        for v in store.list_model_versions(product.id):
            if v.kind == "experts":
                continue
            print(f"{v.name:24s} {v.kind:8s} {v.state:12s} {v.config.get('gate', '')}")
    finally:
        store.close()
    return 0
