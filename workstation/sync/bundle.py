"""The feedback bundle file: a zip with a manifest that lists every member's sha256.

Layout (schema 1)::

    manifest.json      format, schema, station, product, since, created_at, counts,
                       members: [{path, sha256, size}] for every other member
    product.json       name, description, normality_rules, defect_vocabulary
    images.jsonl       one image a line: sha256, name, width, height, split, source_label
    revisions.jsonl    one revision a line (``store.exchange.REVISION_FIELDS``)
    images/<sha256><ext>   the image files, named by their content hash (so deduplicated)
    masks/<sha256>.mask    mask arrays in the store's own blob encoding

Reading verifies everything before anything is written anywhere: the zip's directory
(a truncated or foreign file fails here), the format and schema (a bundle from a newer
program is refused, never half understood), every member against its sha256 and size,
and every line of the three tables (``workstation.sync.tables``). The checks are those of
``workstation.core.untrusted``: the zip's directory against the ``[limits]`` first, every
member path and field that becomes a path against a strict pattern, sizes again while
decompressing. Whatever fails, the whole bundle is refused with one line that names the
file and what is wrong (``this bundle is malformed: <field>: <why>``).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from workstation.core import untrusted
from workstation.core.errors import UserError
from workstation.core.tempfiles import create_temp, remove_stale
from workstation.store.exchange import PortableImage, Revision

FORMAT = "iad-workstation feedback bundle"
SCHEMA = 1
"""Raise when the layout changes; a station refuses bundles with a higher number."""
MODEL_FORMAT = "iad-workstation model version"
MODEL_SCHEMA = 1
"""The same for a published model version (``workstation.sync.models``)."""
MANIFEST = "manifest.json"
PRODUCT = "product.json"
IMAGES = "images.jsonl"
REVISIONS = "revisions.jsonl"
PARTIAL = ".zip.partial"


@dataclass(frozen=True)
class BundleContents:
    """A verified bundle's tables, ready to merge."""

    manifest: dict[str, Any]
    profile: dict[str, Any]
    images: list[PortableImage]
    revisions: list[Revision]


class BundleWriter:
    """Write members to a new temp file beside ``out`` (random name, ``O_EXCL``: a link
    planted there cannot be followed); :meth:`finish` adds the manifest and renames."""

    def __init__(self, out: Path, *, format: str = FORMAT, schema: int = SCHEMA) -> None:
        if out.suffix.lower() != ".zip":
            raise UserError(f"a bundle file must end in .zip, got {out}")
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(out.parent, suffix=PARTIAL)  # what a killed export left here
        self.out = out
        self._format = format
        self._schema = schema
        fd, self._partial = create_temp(out.parent, PARTIAL)
        self._file = os.fdopen(fd, "w+b")
        self._zip = zipfile.ZipFile(self._file, "w", allowZip64=True)
        self._members: list[dict[str, Any]] = []

    def add(self, path: str, data: bytes, *, compress: bool) -> str:
        digest = hashlib.sha256(data).hexdigest()
        kind = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self._zip.writestr(path, data, compress_type=kind)
        self._members.append({"path": path, "sha256": digest, "size": len(data)})
        return digest

    def finish(self, manifest: dict[str, Any]) -> Path:
        body = {
            "format": self._format,
            "schema": self._schema,
            **manifest,
            "members": self._members,
        }
        self._zip.writestr(MANIFEST, json.dumps(body, indent=1), compress_type=zipfile.ZIP_DEFLATED)
        self._zip.close()
        self._file.close()
        os.replace(self._partial, self.out)
        return self.out

    def abandon(self) -> None:
        self._zip.close()
        self._file.close()
        self._partial.unlink(missing_ok=True)


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows).encode()


class VerifiedBundle:
    """An open bundle whose members were all checked; :meth:`read` checks again."""

    def __init__(self, archive: zipfile.ZipFile, members: dict[str, untrusted.Listed]) -> None:
        self._zip = archive
        self._members = members

    def has(self, path: str) -> bool:
        return path in self._members

    def members(self) -> set[str]:
        return set(self._members)

    def chunks(self, path: str) -> Iterator[bytes]:
        """A member's bytes as they stream out, refused once they differ from the manifest."""
        item = self._members.get(path)
        if item is None:
            raise untrusted.MalformedBundle(path, "is not in the bundle")
        return untrusted.verified_chunks(self._zip, item)

    def size(self, path: str) -> int:
        """A member's size as its (checked) manifest declares it."""
        return self._members[path].size

    def read(self, path: str) -> bytearray:
        """A member's bytes, refused if they no longer match the manifest."""
        item = self._members.get(path)
        if item is None:
            raise untrusted.MalformedBundle(path, "is not in the bundle")
        return untrusted.read_verified(self._zip, item)


@dataclass(frozen=True)
class BundleKind:
    """What a reader expects: the manifest's format, the newest schema it reads, and
    what to call the file and the other kind in its messages."""

    format: str
    schema: int
    noun: str
    elsewhere: str
    """Where a bundle of another format goes instead."""


FEEDBACK = BundleKind(FORMAT, SCHEMA, "feedback bundle", "`iad-workstation models install`")
MODEL_VERSION = BundleKind(
    MODEL_FORMAT, MODEL_SCHEMA, "model version bundle", "`iad-workstation sync import`"
)


@contextmanager
def open_verified(path: Path, kind: BundleKind) -> Iterator[tuple[VerifiedBundle, dict[str, Any]]]:
    """Open a bundle and check every member's sha256 and size against its manifest;
    raise :class:`UserError` (one line) when any of it is off, before anyone writes."""
    where = f"{kind.noun} {path}"
    if not path.is_file():
        raise UserError(f"{where} does not exist")
    try:
        with untrusted.open_zip(path, "zip") as archive:
            untrusted.check_directory(archive)
            manifest, listed = _manifest(archive, where, kind)
            for item in listed:
                untrusted.verify_member(archive, item)
            yield VerifiedBundle(archive, {item.path: item for item in listed}), manifest
    except untrusted.MalformedBundle as exc:
        raise untrusted.MalformedBundle(exc.field, exc.why, source=where) from None


def bundle_format(path: Path) -> str | None:
    """The manifest's format of a zip, or None when it cannot be read (the installer of
    whatever kind it is then says what is wrong)."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = untrusted.read_bounded(archive, MANIFEST, untrusted.limits().table_bytes)
            manifest = json.loads(data.decode("utf-8"))
    except (OSError, KeyError, ValueError, RecursionError, zipfile.BadZipFile, UserError):
        return None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    return found if isinstance(found, str) else None


def parse_json(data: bytes | bytearray, field: str) -> Any:
    """A JSON document from a bundle; malformed (one line) when it does not parse."""
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise untrusted.MalformedBundle(
            field, f"is not valid JSON ({untrusted.echo(str(exc))})"
        ) from None


def _manifest(
    archive: zipfile.ZipFile, where: str, kind: BundleKind
) -> tuple[dict[str, Any], list[untrusted.Listed]]:
    names = [n for n in archive.namelist() if not n.endswith("/")]
    if MANIFEST not in names:
        raise UserError(f"{where} has no {MANIFEST}: it is not a {kind.noun}")
    data = untrusted.read_bounded(archive, MANIFEST, untrusted.limits().table_bytes)
    manifest = parse_json(data, MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != kind.format:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise UserError(
            f"{where} is not a {kind.noun} (its manifest's format is "
            f"{untrusted.echo(found)}); a bundle of another kind goes to {kind.elsewhere}"
        )
    schema = untrusted.integer(manifest.get("schema"), "manifest.schema", low=1)
    if schema > kind.schema:
        raise UserError(
            f"{where} has bundle schema {schema}, but this program reads up to schema "
            f"{kind.schema}; update iad-workstation on this station first (nothing was "
            "imported)"
        )
    untrusted.station(manifest.get("station"), "manifest.station")
    untrusted.name(manifest.get("product"), "manifest.product")
    listed = untrusted.listed_members(manifest.get("members"), "manifest.members")
    paths = {m.path for m in listed}
    content = set(names) - {MANIFEST}
    if len(names) != len(set(names)) or paths != content:
        missing = sorted(paths - content)[:3]
        extra = sorted(content - paths)[:3]
        raise UserError(
            f"{where} does not match its manifest (missing: "
            f"{untrusted.echo(missing or 'none')}; not listed: "
            f"{untrusted.echo(extra or 'none')}); the bundle is damaged"
        )
    return manifest, listed


def image_member(image: PortableImage) -> str:
    suffix = PurePosixPath(image.name).suffix.lower()
    return f"images/{image.sha256}{suffix if suffix[1:].isascii() and suffix[1:].isalnum() else ''}"


def mask_member(sha: str) -> str:
    return f"masks/{sha}.mask"
