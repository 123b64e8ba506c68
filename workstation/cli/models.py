"""``iad-workstation models ...``: list, download, bundle and install model weights.

Each subcommand is one ``_register_<name>(inner)`` function listed in :data:`SUBCOMMANDS`;
adding a subcommand (e.g. model-version ``promote`` / ``rollback``) means writing one more
such function and appending it there. Handlers import the weights module inside, so
``iad-workstation --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from workstation.cli import model_versions, threshold
from workstation.cli.storeargs import add_db_option, open_existing_store, store_path

SubParsers = argparse._SubParsersAction


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- list


def _register_list(inner: SubParsers) -> None:
    parser = inner.add_parser(
        "list", help="installed bundles and catalogue models with their status"
    )
    parser.add_argument(
        "--no-verify", action="store_true",
        help="skip re-hashing installed bundles (fast; hash column shows '-')",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_list)


def _list(args: argparse.Namespace) -> int:
    from workstation.pretrained.bundles import installed_bundles
    from workstation.pretrained.catalog import CATALOG
    from workstation.pretrained.weights import bundles_dir, model_status

    bundles = installed_bundles(verify=not args.no_verify)
    catalog = [(entry, model_status(entry.name)) for entry in CATALOG.values()]
    if args.json:
        print(json.dumps({
            "bundles_dir": str(bundles_dir()),
            "installed": [
                {"name": b.name, "kind": b.family, "size_bytes": b.size_bytes,
                 "hashes_ok": b.hashes_ok, "created": b.created, "path": str(b.path),
                 "problem": b.problem}
                for b in bundles
            ],
            "catalog": [
                {"name": e.name, "kind": e.family, "status": status, "source": e.source}
                for e, status in catalog
            ],
        }, indent=2))
        return 0
    print(f"Installed bundles ({bundles_dir()}):")
    if not bundles:
        print("  (none)")
    for bundle in bundles:
        ok = {True: "ok", False: "DAMAGED", None: "-"}[bundle.hashes_ok]
        family = bundle.family or "?"
        print(f"  {bundle.name:<22} {family:<10} {_size(bundle.size_bytes):>9}  hashes {ok}")
        if bundle.problem:
            print(f"    {bundle.problem}")
    print("Catalogue:")
    for entry, status in catalog:
        print(f"  {entry.name:<22} {entry.family:<10} {status:<10} {entry.summary}")
    return 0


def _size(size_bytes: int) -> str:
    if size_bytes >= 1e9:
        return f"{size_bytes / 1e9:.1f} GB"
    return f"{size_bytes / 1e6:.1f} MB"


# --------------------------------------------------------------------------- install


def _register_install(inner: SubParsers) -> None:
    parser = inner.add_parser(
        "install", help="install a bundle zip (checks every sha256, installs atomically)"
    )
    parser.add_argument(
        "zip", type=Path, help="bundle made by `models bundle` (weights) or `models publish` "
        "(a trained version, installed into the store as the product's active version)"
    )
    parser.add_argument(
        "--product", help="a version bundle must be for this product (refused otherwise)"
    )
    add_db_option(parser)
    parser.set_defaults(handler=_install)


def _install(args: argparse.Namespace) -> int:
    from workstation.pretrained.bundles import install_bundle
    from workstation.sync.bundle import MODEL_FORMAT, bundle_format

    if bundle_format(args.zip) == MODEL_FORMAT:
        return _install_version(args)
    installed = install_bundle(args.zip, progress=_say)
    print(f"installed {installed.name} ({installed.family}, {_size(installed.size_bytes)}) "
          f"in {installed.path}")
    return 0


def _install_version(args: argparse.Namespace) -> int:
    from workstation.store.repository import Store
    from workstation.sync.models import install_version

    with Store.open(store_path(args)) as store:
        version = install_version(store, args.zip, product=args.product)
        product = store.get_product(version.product_id).name
    print(json.dumps({"active": version.name, "kind": version.kind, "product": product}))
    return 0


# --------------------------------------------------------------------------- publish


def _register_publish(inner: SubParsers) -> None:
    parser = inner.add_parser(
        "publish",
        help="write a trained model version to a zip for the stations (`models install` there)",
    )
    parser.add_argument("version", help="model version name (see `models versions`)")
    parser.add_argument("out", type=Path, help="zip file to write")
    add_db_option(parser)
    parser.set_defaults(handler=_publish)


def _publish(args: argparse.Namespace) -> int:
    from workstation.sync.models import publish_version

    with open_existing_store(args) as store:
        out = publish_version(store, args.version, args.out)
    print(f"wrote {out}; on each station run: iad-workstation models install {out.name}")
    return 0


# --------------------------------------------------------------------------- bundle


def _register_bundle(inner: SubParsers) -> None:
    parser = inner.add_parser(
        "bundle",
        help="pack a model from this machine (cache, folder or bundle) into a zip to carry "
        "to an offline machine",
    )
    parser.add_argument("name", help="catalogue name (see `models list`) or a name for --from")
    parser.add_argument("out", type=Path, help="zip file to write")
    parser.add_argument(
        "--from", dest="folder", type=Path, default=None,
        help="pack this model folder (open_clip local-dir or transformers save_pretrained)",
    )
    parser.set_defaults(handler=_bundle)


def _bundle(args: argparse.Namespace) -> int:
    from workstation.pretrained.bundles import create_bundle

    out = create_bundle(args.name, args.out, folder=args.folder, progress=_say)
    print(f"wrote {out}; on the offline machine run: iad-workstation models install {out.name}")
    return 0


# --------------------------------------------------------------------------- download


def _register_download(inner: SubParsers) -> None:
    parser = inner.add_parser(
        "download", help="download a catalogue model into the Hugging Face cache (needs internet)"
    )
    parser.add_argument("name", help="catalogue name (see `models list`)")
    parser.set_defaults(handler=_download)


def _download(args: argparse.Namespace) -> int:
    from workstation.pretrained.weights import download

    resolved = download(args.name, progress=_say)
    print(f"{resolved.name} is ready in {resolved.path}")
    return 0


SUBCOMMANDS: tuple[Callable[[SubParsers], None], ...] = (
    _register_list,
    _register_install,
    _register_publish,
    _register_bundle,
    _register_download,
    model_versions.register_versions,
    model_versions.register_promote,
    model_versions.register_rollback,
    threshold.register_threshold,
)


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "models", help="model weights: list, download, bundle for offline use, install"
    )
    inner = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    for add in SUBCOMMANDS:
        add(inner)
