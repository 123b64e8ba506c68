"""The rows that feedback bundles carry between stations: read for export, merged on import.

The SQL half of ``workstation.sync`` (which owns the bundle file). A revision leaves a
store as a plain dict with its global key (station id, id at that station), the image's
content hash instead of a local image id and its parent's global key instead of a local
parent id, so that any station can place it. Merging appends: a revision whose key is
already here is skipped, so a second import of the same bundle changes nothing; nothing
is ever updated except the ``images`` columns that mirror the current value, which are
recomputed by the one rule in :mod:`workstation.store.current`.

The whole merge is one write transaction: a killed import leaves nothing (its image and
mask files are content-addressed, so a re-run reuses them and the next open collects
unreferenced mask files); two imports into one store queue on the write lock, and the
second finds the first's rows and skips them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from workstation.core.errors import UserError
from workstation.core.types import Product
from workstation.store.base import as_binary_mask
from workstation.store.blobs import AtomicFiles, store_images_dir
from workstation.store.current import refresh_current
from workstation.store.repository import Store

RevisionKind = Literal["mask", "explanation", "review"]
Revision = dict[str, Any]
"""One revision as it travels (see :data:`REVISION_FIELDS` for its keys)."""

TABLES: dict[RevisionKind, str] = {
    "mask": "mask_revisions",
    "explanation": "explanation_revisions",
    "review": "reviews",
}
_COMMON = ("kind", "station", "id", "image", "created_at", "model_version")
REVISION_FIELDS: dict[RevisionKind, tuple[str, ...]] = {
    "mask": (*_COMMON, "source", "author", "parent", "blob"),
    "explanation": (
        *_COMMON,
        "source",
        "author",
        "parent",
        "verdict",
        "defect_type",
        "location",
        "severity",
        "description",
    ),
    "review": (*_COMMON, "verdict", "reason", "reviewer", "seen"),
}
"""Keys of each kind; ``parent`` is ``[station, id]`` or None, ``seen`` a list of keys."""
_SAFE_FILE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PortableImage:
    """An image as it travels: identified by content, with what the store knows of it."""

    sha256: str
    name: str
    width: int
    height: int
    split: str
    source_label: str | None
    path: str = ""
    """Where the file is on the exporting station (not written into the bundle)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "split": self.split,
            "source_label": self.source_label,
        }


@dataclass(frozen=True)
class FeedbackRows:
    """What one product's export carries (revisions in an order where parents come first)."""

    product: Product
    images: list[PortableImage]
    revisions: list[Revision]
    blobs: list[str]
    """Mask arrays the revisions refer to (sha256 of the array, as in the blob store)."""


@dataclass
class MergeReport:
    product: str
    product_created: bool = False
    profile_differs: bool = False
    images_added: int = 0
    images_known: int = 0
    added: dict[str, int] = field(default_factory=lambda: {k: 0 for k in TABLES})
    known: int = 0
    conflicts: int = 0
    """Images of the product flagged as conflicts after the merge."""


def now_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# ------------------------------------------------------------------------------ export
def read_feedback(store: Store, product_name: str, *, since: str | None = None) -> FeedbackRows:
    """Every revision of the product (those that entered this store after ``since``), with
    the images they concern (and the images that entered after ``since``)."""
    product = store.get_product(product_name)
    station = store.station_id
    conn = store._db().conn
    cutoff = since or ""
    revisions: list[Revision] = []
    for kind, table in TABLES.items():
        revisions += _read_table(conn, kind, table, product.id, station, cutoff)
    wanted = {r["image"] for r in revisions}
    images = [
        PortableImage(sha, name, width, height, split, label, path)
        for sha, name, width, height, split, label, path, imported in conn.execute(
            "SELECT sha256, name, width, height, split, source_label, path, imported_at "
            "FROM images WHERE product_id = ? ORDER BY id",
            (product.id,),
        )
        if sha in wanted or (imported or "") > cutoff
    ]
    blobs = sorted({r["blob"] for r in revisions if r["kind"] == "mask"})
    return FeedbackRows(product, images, revisions, blobs)


def _read_table(
    conn: Any, kind: RevisionKind, table: str, product_id: int, station: str, cutoff: str
) -> list[Revision]:
    extra = {
        "mask": "r.source, r.author, p.station, p.origin_id, r.blob",
        "explanation": "r.source, r.author, p.station, p.origin_id, r.verdict, r.defect_type, "
        "r.location, r.severity, r.description",
        "review": "r.verdict, r.reason, r.reviewer, r.seen",
    }[kind]
    parent_join = (
        ""
        if kind == "review"
        else f"LEFT JOIN (SELECT id, COALESCE(origin_station, :me) AS station, "
        f"COALESCE(origin_id, id) AS origin_id FROM {table}) p ON p.id = r.parent_id "
    )
    rows = conn.execute(
        f"SELECT COALESCE(r.origin_station, :me), COALESCE(r.origin_id, r.id), i.sha256, "
        f"r.created_at, r.model_version, {extra} FROM {table} r "
        f"JOIN images i ON i.id = r.image_id {parent_join}"
        "WHERE i.product_id = :product AND COALESCE(r.received_at, r.created_at) > :cutoff "
        "ORDER BY r.id",
        {"me": station, "product": product_id, "cutoff": cutoff},
    ).fetchall()
    out: list[Revision] = []
    for row in rows:
        item: Revision = {
            "kind": kind,
            "station": row[0],
            "id": row[1],
            "image": row[2],
            "created_at": row[3],
            "model_version": row[4],
        }
        if kind == "review":
            item |= {
                "verdict": row[5],
                "reason": row[6],
                "reviewer": row[7],
                "seen": json.loads(row[8] or "[]"),
            }
        else:
            item |= {
                "source": row[5],
                "author": row[6],
                "parent": None if row[7] is None else [row[7], row[8]],
            }
            if kind == "mask":
                item["blob"] = row[9]
            else:
                item |= dict(
                    zip(
                        ("verdict", "defect_type", "location", "severity", "description"),
                        row[9:14],
                        strict=True,
                    )
                )
        out.append(item)
    return out


# ------------------------------------------------------------------------------ import
def merge_feedback(
    store: Store,
    *,
    profile: dict[str, Any],
    images: Sequence[PortableImage],
    revisions: Sequence[Revision],
    image_bytes: Callable[[PortableImage], bytes],
    mask_array: Callable[[str], np.ndarray],
    progress: Callable[[int, int], None] | None = None,
) -> MergeReport:
    """Append what this store lacks, in one transaction; see the module docstring.

    ``profile`` is the product as the bundle describes it (name, description,
    normality_rules, defect_vocabulary); a product already here keeps its own profile
    (``profile_differs`` says when they differ). ``image_bytes`` and ``mask_array``
    fetch an image file or a mask array from the (already verified) bundle.
    """
    me = store.station_id
    name = str(profile["name"])
    report = MergeReport(product=name)
    images_dir = store_images_dir(store.path)
    received = now_stamp()
    total = len(images) + len(revisions)
    with store._write() as w:
        conn = w.conn
        product_id = _product_for(conn, profile, received, report)
        image_ids = _merge_images(
            w,
            product_id,
            images,
            image_bytes=image_bytes,
            folder=images_dir,
            now=received,
            report=report,
        )
        if progress is not None:
            progress(len(images), total)
        new = [r for r in revisions if not _known(conn, r, me)]
        report.known = len(revisions) - len(new)
        for revision in new:
            if revision["image"] not in image_ids:
                raise UserError(
                    f"the bundle's {revision['kind']} revision {revision['station']}:"
                    f"{revision['id']} concerns an image the bundle does not carry; "
                    "the bundle is damaged"
                )
        _put_masks(w, new, image_ids, mask_array)
        touched: set[int] = set()
        for done, revision in enumerate(new, start=len(images)):
            image_id = image_ids[revision["image"]][0]
            _insert(conn, revision, image_id, me, received)
            report.added[revision["kind"]] += 1
            touched.add(image_id)
            if progress is not None and done % 500 == 0:
                progress(done, total)
        refresh_current(conn, sorted(touched), me)
        report.conflicts = int(
            conn.execute(
                "SELECT COUNT(*) FROM images WHERE product_id = ? AND sync_conflict = 1",
                (product_id,),
            ).fetchone()[0]
        )
    if progress is not None:
        progress(total, total)
    return report


def _merge_images(
    w: Any,
    product_id: int,
    images: Sequence[PortableImage],
    *,
    image_bytes: Callable[[PortableImage], bytes],
    folder: Path,
    now: str,
    report: MergeReport,
) -> dict[str, tuple[int, int, int]]:
    """Add the images this store lacks; per content hash: (local id, width, height)."""
    image_ids: dict[str, tuple[int, int, int]] = {}
    # Image files are flushed together and renamed before the rows naming them commit.
    with AtomicFiles(fsync=w.blobs.fsync) as files:
        for image in images:
            found = w.conn.execute(
                "SELECT id, width, height FROM images WHERE product_id = ? AND sha256 = ?",
                (product_id, image.sha256),
            ).fetchone()
            if found is None:
                path = _place_image(folder, image, image_bytes, files, w)
                cursor = w.conn.execute(
                    "INSERT INTO images (product_id, path, name, sha256, width, height, split, "
                    "source_label, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        product_id,
                        str(path),
                        path.name,
                        image.sha256,
                        image.width,
                        image.height,
                        image.split,
                        image.source_label,
                        now,
                    ),
                )
                found = (int(cursor.lastrowid or 0), image.width, image.height)
                report.images_added += 1
            else:
                report.images_known += 1
            image_ids[image.sha256] = (found[0], found[1], found[2])
    return image_ids


def _product_for(conn: Any, profile: dict[str, Any], now: str, report: MergeReport) -> int:
    rules = json.dumps(list(profile.get("normality_rules", [])))
    vocabulary = json.dumps(list(profile.get("defect_vocabulary", [])))
    description = str(profile.get("description", ""))
    row = conn.execute(
        "SELECT id, description, normality_rules, defect_vocabulary FROM products WHERE name = ?",
        (profile["name"],),
    ).fetchone()
    if row is not None:
        report.profile_differs = tuple(row[1:]) != (description, rules, vocabulary)
        return int(row[0])
    cursor = conn.execute(
        "INSERT INTO products (name, description, normality_rules, defect_vocabulary, "
        "created_at) VALUES (?, ?, ?, ?, ?)",
        (profile["name"], description, rules, vocabulary, now),
    )
    report.product_created = True
    return int(cursor.lastrowid or 0)


def _place_image(
    images_dir: Path,
    image: PortableImage,
    image_bytes: Callable[[PortableImage], bytes],
    files: AtomicFiles,
    w: Any,
) -> Path:
    """Write the image file under its hash (reused when a killed import left it whole)."""
    name = _SAFE_FILE.sub("_", image.name).strip("._") or "image"
    target = images_dir / image.sha256[:16] / name
    if target.is_file() and _file_sha256(target) == image.sha256:
        return target
    files.add(target, image_bytes(image))
    w.track_created(target)
    return target


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _known(conn: Any, revision: Revision, me: str) -> bool:
    """Whether this store has the revision already (our own ones always: never deleted)."""
    if revision["station"] == me:
        return True
    table = TABLES[revision["kind"]]
    return _local_id(conn, table, revision["station"], revision["id"], me) is not None


def _put_masks(
    w: Any,
    revisions: Sequence[Revision],
    image_ids: dict[str, tuple[int, int, int]],
    mask_array: Callable[[str], np.ndarray],
) -> None:
    """Store the new revisions' mask arrays, a batch at a time (flushed together)."""
    shapes: dict[str, tuple[int, int]] = {}
    for revision in revisions:
        if revision["kind"] == "mask":
            _, width, height = image_ids[revision["image"]]
            shapes.setdefault(revision["blob"], (height, width))
    pending = [sha for sha in shapes if not w.blobs.exists(sha)]

    def arrays() -> Iterator[np.ndarray]:  # one at a time: masks of big images are big
        for sha in pending:
            array = as_binary_mask(mask_array(sha))
            if array.shape != shapes[sha]:
                height, width = shapes[sha]
                raise UserError(
                    f"the bundle's mask {sha[:12]} is {array.shape[1]}x{array.shape[0]} but "
                    f"its image is {width}x{height}; the bundle is damaged"
                )
            yield array

    for expected, stored in zip(pending, w.put_blobs(arrays()), strict=True):
        if stored != expected:
            raise UserError(
                f"the bundle's mask {expected[:12]} does not hash to its name; "
                "the bundle is damaged"
            )


def _local_id(conn: Any, table: str, station: str, origin_id: int, me: str) -> int | None:
    if station == me:
        row = conn.execute(
            f"SELECT id FROM {table} WHERE id = ? AND origin_station IS NULL", (origin_id,)
        ).fetchone()
    else:
        row = conn.execute(
            f"SELECT id FROM {table} WHERE origin_station = ? AND origin_id = ?",
            (station, origin_id),
        ).fetchone()
    return None if row is None else int(row[0])


def _insert(conn: Any, revision: Revision, image_id: int, me: str, received: str) -> None:
    kind: RevisionKind = revision["kind"]
    table = TABLES[kind]
    origin = (revision["station"], revision["id"], received)
    if kind == "review":
        seen = revision["seen"]
        conn.execute(
            "INSERT INTO reviews (image_id, verdict, reason, reviewer, created_at, "
            "model_version, seen, origin_station, origin_id, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                image_id,
                revision["verdict"],
                revision["reason"],
                revision["reviewer"],
                revision["created_at"],
                revision["model_version"],
                json.dumps(seen) if seen else None,
                *origin,
            ),
        )
        return
    parent = revision["parent"]
    parent_id = None if parent is None else _local_id(conn, table, parent[0], parent[1], me)
    common = (
        image_id,
        revision["source"],
        revision["author"],
        revision["created_at"],
        parent_id,
        revision["model_version"],
    )
    if kind == "mask":
        conn.execute(
            "INSERT INTO mask_revisions (image_id, source, author, created_at, parent_id, "
            "model_version, blob, origin_station, origin_id, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*common, revision["blob"], *origin),
        )
        return
    conn.execute(
        "INSERT INTO explanation_revisions (image_id, source, author, created_at, parent_id, "
        "model_version, verdict, defect_type, location, severity, description, origin_station, "
        "origin_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            *common,
            revision["verdict"],
            revision["defect_type"],
            revision["location"],
            revision["severity"],
            revision["description"],
            *origin,
        ),
    )
