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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workstation import __version__
from workstation.core import kinds, untrusted
from workstation.core.errors import UserError
from workstation.core.types import ModelKind, ModelVersion
from workstation.core.untrusted import MalformedBundle, echo
from workstation.store.exchange import now_stamp
from workstation.store.model_files import folder_sha256
from workstation.store.repository import Store
from workstation.sync.bundle import (
    MODEL_FORMAT,
    MODEL_SCHEMA,
    MODEL_VERSION,
    BundleWriter,
    VerifiedBundle,
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
        fields = _fields(manifest)
        made_for = fields.product
        if product is not None and product != made_for:
            raise UserError(
                f"{where} was made for product {echo(made_for)}, not {echo(product)}; "
                "nothing was installed"
            )
        local = store.find_product(made_for)
        if local is None:
            names = ", ".join(p.name for p in store.list_products()) or "none"
            raise UserError(
                f"{where} was made for product {echo(made_for)}, which this station does not "
                f"have (its products: {echo(names, 200)}); nothing was installed"
            )
        name = installed_name(fields.version, fields.station)
        existing = next((v for v in store.list_model_versions(local.id) if v.name == name), None)
        if existing is not None:
            if existing.files_sha256 != fields.files_sha256:
                raise UserError(
                    f"{where}: a different {name} is installed already; nothing was installed"
                )
            return existing
        staging = store.new_model_folder()
        try:
            for member in sorted(bundle.members()):
                if member.startswith(FILES):
                    _extract(bundle, member, staging)
            if folder_sha256(staging) != fields.files_sha256:
                raise MalformedBundle("manifest.files_sha256", "its files do not hash as published")
            parent = store.active_model_version(local.id, fields.kind)
            published = {
                key: manifest.get(key) for key in ("version", "parent", "station", "published_at")
            }
            return store.add_model_version(
                local.id,
                kind=fields.kind,
                state="active",
                name=name,
                parent_id=None if parent is None else parent.id,
                files=staging,
                metrics=fields.metrics,
                config={**fields.config, "published": published},
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # moved into place unless it failed


@dataclass(frozen=True)
class _Fields:
    product: str
    version: str
    station: str
    kind: ModelKind
    files_sha256: str
    metrics: dict[str, float]
    config: dict[str, Any]


def _fields(manifest: dict[str, Any]) -> _Fields:
    """The manifest's fields, typed and checked (the names become folder names)."""
    kind = untrusted.text(manifest.get("kind"), "manifest.kind", max_chars=100)
    try:
        kinds.check_model_kind(kind)
    except ValueError:
        raise MalformedBundle("manifest.kind", f"unknown model kind {echo(kind)}") from None
    metrics = manifest.get("metrics") or {}
    config = manifest.get("config") or {}
    if not isinstance(metrics, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in metrics.items()
    ):
        raise MalformedBundle("manifest.metrics", "must map names to numbers")
    if not isinstance(config, dict):
        raise MalformedBundle("manifest.config", "must be a JSON object")
    untrusted.strict_name(manifest.get("parent") or "none", "manifest.parent")
    untrusted.text(manifest.get("published_at"), "manifest.published_at", max_chars=100)
    return _Fields(
        product=untrusted.name(manifest.get("product"), "manifest.product"),
        version=untrusted.strict_name(manifest.get("version"), "manifest.version"),
        station=untrusted.station(manifest.get("station"), "manifest.station"),
        kind=kind,
        files_sha256=untrusted.sha256(manifest.get("files_sha256"), "manifest.files_sha256"),
        metrics=metrics,
        config=config,
    )


def _extract(bundle: VerifiedBundle, member: str, staging: Path) -> None:
    """One member into the staging folder: its path checked to stay inside, written to a
    new file (never through a link), refused while streaming once it outgrows its size."""
    target = untrusted.inside(staging, *member[len(FILES) :].split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as out:
        for chunk in bundle.chunks(member):
            out.write(chunk)
