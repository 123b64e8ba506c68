"""A promoted model version as a bundle: published by the training server, installed by
every station (``models publish`` / ``models install``).

The bundle holds the version's folder (weights, config, calibration) under ``files/``
and a manifest (:data:`~workstation.sync.bundle.MODEL_FORMAT`) with the product, kind,
golden-set metrics, config, parent, origin station, the folder's content hash and every
member's sha256. A station installs it as the active version of its kind, with the
version it had active as parent, so ``models rollback`` (or the Models dock) brings that
one back. Refused whole, before anything is written: a bundle made for a product this
store does not have (or not the ``--product`` asked for), one of a newer schema, and a
damaged one.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from workstation import __version__
from workstation.core import kinds
from workstation.core.errors import UserError
from workstation.core.types import ModelKind, ModelVersion
from workstation.store.exchange import now_stamp
from workstation.store.model_files import folder_sha256
from workstation.store.repository import Store
from workstation.sync.bundle import (
    MODEL_FORMAT,
    MODEL_SCHEMA,
    MODEL_VERSION,
    BundleWriter,
    open_verified,
)

FILES = "files/"


def publish_version(store: Store, version_name: str, out: Path) -> Path:
    """Write the version's bundle to ``out`` (its files are checked against their hash)."""
    version = store.get_model_version(version_name)
    if version.path is None:
        raise UserError(f"{version.name} has no files to publish")
    folder = store.model_files(version)
    product = store.get_product(version.product_id)
    parent = None if version.parent_id is None else store.get_model_version(version.parent_id)
    writer = BundleWriter(out, format=MODEL_FORMAT, schema=MODEL_SCHEMA)
    try:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            writer.add(
                FILES + path.relative_to(folder).as_posix(), path.read_bytes(), compress=True
            )
        return writer.finish(
            {
                "product": product.name,
                "version": version.name,
                "kind": version.kind,
                "state": version.state,
                "metrics": version.metrics,
                "config": version.config,
                "parent": None if parent is None else parent.name,
                "created_at": version.created_at,
                "published_at": now_stamp(),
                "station": store.station_id,
                "files_sha256": version.files_sha256,
                "app_version": __version__,
            }
        )
    except BaseException:
        writer.abandon()
        raise


def installed_name(version: str, station: str) -> str:
    """The name a published version gets on a station: unique per origin station, so it
    never collides with the station's own ``adapter-3``, and the same on every install."""
    return f"{version}.{station[:8]}"


def install_version(store: Store, bundle_path: Path, *, product: str | None = None) -> ModelVersion:
    """Verify the bundle, then register its files as the product's active version.

    Installing the same bundle again changes nothing and returns the installed version.
    """
    with open_verified(bundle_path, MODEL_VERSION) as (bundle, manifest):
        where = f"model version bundle {bundle_path}"
        made_for = manifest.get("product")
        if not isinstance(made_for, str):
            raise UserError(f"{where} names no product; it is damaged")
        if product is not None and product != made_for:
            raise UserError(
                f"{where} was made for product {made_for!r}, not {product!r}; nothing was installed"
            )
        local = store.find_product(made_for)
        if local is None:
            names = ", ".join(p.name for p in store.list_products()) or "none"
            raise UserError(
                f"{where} was made for product {made_for!r}, which this station does not "
                f"have (its products: {names}); nothing was installed"
            )
        kind: ModelKind = kinds.check_model_kind(str(manifest.get("kind")))
        name = installed_name(str(manifest["version"]), str(manifest["station"]))
        existing = next((v for v in store.list_model_versions(local.id) if v.name == name), None)
        if existing is not None:
            if existing.files_sha256 != manifest.get("files_sha256"):
                raise UserError(
                    f"{where}: a different {name} is installed already; nothing was installed"
                )
            return existing
        staging = store.new_model_folder()
        try:
            for member in sorted(bundle.members()):
                if not member.startswith(FILES):
                    continue
                target = staging.joinpath(*PurePosixPath(member[len(FILES) :]).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(bundle.read(member))
            if folder_sha256(staging) != manifest.get("files_sha256"):
                raise UserError(f"{where}: its files do not hash as published; it is damaged")
            parent = store.active_model_version(local.id, kind)
            published = {
                key: manifest.get(key) for key in ("version", "parent", "station", "published_at")
            }
            return store.add_model_version(
                local.id,
                kind=kind,
                state="active",
                name=name,
                parent_id=None if parent is None else parent.id,
                files=staging,
                metrics=manifest.get("metrics") or {},
                config={**(manifest.get("config") or {}), "published": published},
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # moved into place unless it failed
