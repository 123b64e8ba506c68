"""``sync export`` and ``sync import``: one product's feedback from station to station.

Export reads the rows (``store.exchange``), then the image files from where the store
found them and the mask arrays from its blob store, and writes a bundle
(:mod:`workstation.sync.bundle`). Import verifies the whole bundle first, then merges it
in one transaction (``store.exchange.merge_feedback``). The merge rule (append, skip
what is known, latest review wins, conflicts flagged) is in ``store.current``.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from workstation import __version__
from workstation.core.errors import UserError
from workstation.core.imageio import ImageReadError, header_size
from workstation.core.untrusted import MalformedBundle, clip, echo
from workstation.store.blobs import decode_blob
from workstation.store.exchange import (
    MergeReport,
    PortableImage,
    merge_feedback,
    now_stamp,
    read_feedback,
)
from workstation.store.repository import Store
from workstation.sync.bundle import (
    IMAGES,
    PRODUCT,
    REVISIONS,
    BundleWriter,
    image_member,
    jsonl,
    mask_member,
)
from workstation.sync.tables import open_bundle

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ExportReport:
    path: Path
    product: str
    images: int
    revisions: int
    masks: int
    stamp: str
    """When the export started: pass it as ``--since`` next time (nothing is missed; rows
    written during this export may come again, which an import skips)."""


def parse_stamp(text: str) -> str:
    """``--since`` as the store writes times (UTC ISO with microseconds); naive is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(
            f"--since {text!r} is not a time; give an ISO time such as 2026-11-30T22:00:00Z "
            "(the stamp the previous export printed)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def export_feedback(
    store: Store,
    product: str,
    out: Path,
    *,
    since: str | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Write the product's feedback (entered after ``since``) to the bundle ``out``."""
    stamp = now_stamp()
    rows = read_feedback(store, product, since=None if since is None else parse_stamp(since))
    profile = {
        "name": rows.product.name,
        "description": rows.product.description,
        "normality_rules": list(rows.product.normality_rules),
        "defect_vocabulary": list(rows.product.defect_vocabulary),
    }
    writer = BundleWriter(out)
    total = len(rows.images) + len(rows.blobs)
    try:
        writer.add(PRODUCT, json.dumps(profile, indent=1).encode(), compress=True)
        writer.add(IMAGES, jsonl([i.to_json() for i in rows.images]), compress=True)
        writer.add(REVISIONS, jsonl(rows.revisions), compress=True)
        for done, image in enumerate(rows.images):
            writer.add(image_member(image), _image_file(image), compress=False)
            if progress is not None and done % 500 == 0:
                progress(done, total)
        for done, sha in enumerate(rows.blobs, start=len(rows.images)):
            path = store.blobs.path_of(sha)
            if path is None or path.suffix != ".mask":
                raise UserError(
                    f"mask array {sha[:12]} is missing from {store.blobs.root}; run "
                    f"`iad-workstation doctor --db {store.path}`"
                )
            writer.add(mask_member(sha), path.read_bytes(), compress=False)
            if progress is not None and done % 500 == 0:
                progress(done, total)
        written = writer.finish(
            {
                "app_version": __version__,
                "station": store.station_id,
                "product": rows.product.name,
                "since": since,
                "created_at": stamp,
                "counts": {
                    "images": len(rows.images),
                    "revisions": len(rows.revisions),
                    "masks": len(rows.blobs),
                },
            }
        )
    except BaseException:
        writer.abandon()
        raise
    if progress is not None:
        progress(total, total)
    return ExportReport(
        written, rows.product.name, len(rows.images), len(rows.revisions), len(rows.blobs), stamp
    )


def _image_file(image: PortableImage) -> bytes:
    try:
        data = Path(image.path).read_bytes()
    except OSError as exc:
        raise UserError(
            f"image {image.path} cannot be read ({exc.strerror or exc}); the bundle needs "
            "every image of the product: put the folder back or import it again"
        ) from None
    if hashlib.sha256(data).hexdigest() != image.sha256:
        raise UserError(
            f"image {image.path} changed on disk since it was imported (its sha256 differs); "
            "restore the original file: the feedback refers to the original"
        )
    return data


def import_feedback(
    store: Store, bundle_path: Path, *, progress: Progress | None = None
) -> MergeReport:
    """Verify the whole bundle, then merge it in one transaction (idempotent)."""
    with open_bundle(bundle_path) as (bundle, contents):

        def image_bytes(image: PortableImage) -> bytes:
            member = image_member(image)
            data = bundle.read(member)
            try:
                size = header_size(data, name=member)
            except ImageReadError as exc:
                raise MalformedBundle(
                    member, f"is not a usable image ({clip(str(exc), 200)})"
                ) from None
            if size != (image.width, image.height):
                raise MalformedBundle(
                    member, f"is {size[0]}x{size[1]}, not {image.width}x{image.height}"
                )
            return data

        def mask_array(sha: str) -> np.ndarray:
            member = mask_member(sha)
            try:
                return decode_blob(bundle.read(member), ".mask")
            except (ValueError, OSError, zlib.error, struct.error) as exc:
                raise MalformedBundle(member, f"cannot be decoded ({echo(str(exc))})") from None

        return merge_feedback(
            store,
            profile=contents.profile,
            images=contents.images,
            revisions=contents.revisions,
            image_bytes=image_bytes,
            mask_array=mask_array,
            progress=progress,
        )
