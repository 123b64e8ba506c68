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
and every line of the three tables. Whatever fails, the whole bundle is refused with one
line that names the file and what to do.
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

from workstation.core.errors import UserError
from workstation.core.types import (
    ExplanationVerdict,
    ReviewVerdict,
    Severity,
    Split,
    check_literal,
    check_revision_source,
)
from workstation.store.exchange import REVISION_FIELDS, TABLES, PortableImage, Revision

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
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BundleContents:
    """A verified bundle's tables, ready to merge."""

    manifest: dict[str, Any]
    profile: dict[str, Any]
    images: list[PortableImage]
    revisions: list[Revision]


class BundleWriter:
    """Write members to ``OUT.zip.partial``; :meth:`finish` adds the manifest and renames."""

    def __init__(self, out: Path, *, format: str = FORMAT, schema: int = SCHEMA) -> None:
        if out.suffix.lower() != ".zip":
            raise UserError(f"a bundle file must end in .zip, got {out}")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out = out
        self._format = format
        self._schema = schema
        self._partial = out.with_name(out.name + ".partial")
        self._zip = zipfile.ZipFile(self._partial, "w", allowZip64=True)
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
        os.replace(self._partial, self.out)
        return self.out

    def abandon(self) -> None:
        self._zip.close()
        self._partial.unlink(missing_ok=True)


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows).encode()


class VerifiedBundle:
    """An open bundle whose members were all checked; :meth:`read` checks again."""

    def __init__(self, archive: zipfile.ZipFile, where: str, members: dict[str, dict]) -> None:
        self._zip = archive
        self._where = where
        self._members = members

    def has(self, path: str) -> bool:
        return path in self._members

    def members(self) -> set[str]:
        return set(self._members)

    def read(self, path: str) -> bytes:
        """A member's bytes, refused if they no longer match the manifest."""
        item = self._members.get(path)
        if item is None:
            raise UserError(f"{self._where} has no member {path}; the bundle is damaged")
        data = self._zip.read(path)
        if len(data) != item["size"] or hashlib.sha256(data).hexdigest() != item["sha256"]:
            raise UserError(
                f"{self._where}: {path} does not match the sha256 in its manifest (changed or "
                "damaged on the way); copy the bundle again or export a new one"
            )
        return data


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
        with zipfile.ZipFile(path) as archive:
            manifest = _manifest(archive, where, kind)
            members = {item["path"]: item for item in manifest["members"]}
            for item in manifest["members"]:
                _verify_member(archive, item, where)
            yield VerifiedBundle(archive, where, members), manifest
    except zipfile.BadZipFile as exc:
        raise UserError(
            f"{where} is not a whole zip file (truncated or damaged: {exc}); nothing was "
            "imported; copy it again or make a new one"
        ) from None


@contextmanager
def open_bundle(path: Path) -> Iterator[tuple[VerifiedBundle, BundleContents]]:
    """A verified feedback bundle and its parsed, checked tables."""
    with open_verified(path, FEEDBACK) as (bundle, manifest):
        for required in (PRODUCT, IMAGES, REVISIONS):
            if not bundle.has(required):
                raise UserError(f"feedback bundle {path} lacks {required}; it is damaged")
        where = f"feedback bundle {path}"
        yield bundle, _contents(bundle, manifest, bundle.members(), where)


def bundle_format(path: Path) -> str | None:
    """The manifest's format of a zip, or None when it cannot be read (the installer of
    whatever kind it is then says what is wrong)."""
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read(MANIFEST).decode("utf-8"))
    except (OSError, KeyError, ValueError, UnicodeDecodeError, zipfile.BadZipFile):
        return None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    return found if isinstance(found, str) else None


def _manifest(archive: zipfile.ZipFile, where: str, kind: BundleKind) -> dict[str, Any]:
    names = [n for n in archive.namelist() if not n.endswith("/")]
    if MANIFEST not in names:
        raise UserError(f"{where} has no {MANIFEST}: it is not a {kind.noun}")
    try:
        manifest = json.loads(archive.read(MANIFEST).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != kind.format:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise UserError(
            f"{where} is not a {kind.noun} (its manifest's format is {found!r}); "
            f"a bundle of another kind goes to {kind.elsewhere}"
        )
    schema = manifest.get("schema")
    if not isinstance(schema, int) or schema < 1:
        raise UserError(f"{where}: its manifest has no valid schema number ({schema!r})")
    if schema > kind.schema:
        raise UserError(
            f"{where} has bundle schema {schema}, but this program reads up to schema "
            f"{kind.schema}; update iad-workstation on this station first (nothing was "
            "imported)"
        )
    listed = manifest.get("members")
    if not isinstance(listed, list) or not all(
        isinstance(m, dict)
        and isinstance(m.get("path"), str)
        and isinstance(m.get("sha256"), str)
        and isinstance(m.get("size"), int)
        for m in listed
    ):
        raise UserError(f"{where}: its manifest's member list is malformed")
    paths = [m["path"] for m in listed]
    for member in paths:
        pure = PurePosixPath(member)
        if pure.is_absolute() or ".." in pure.parts or "\\" in member:
            raise UserError(f"{where}: refusing the unsafe member path {member!r}")
    content = set(names) - {MANIFEST}
    if len(set(paths)) != len(paths) or set(paths) != content:
        missing = sorted(set(paths) - content)[:3]
        extra = sorted(content - set(paths))[:3]
        raise UserError(
            f"{where} does not match its manifest (missing: {missing or 'none'}; not "
            f"listed: {extra or 'none'}); the bundle is damaged"
        )
    return manifest


def _verify_member(archive: zipfile.ZipFile, item: dict[str, Any], where: str) -> None:
    digest = hashlib.sha256()
    size = 0
    with archive.open(item["path"]) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if size != item["size"] or digest.hexdigest() != item["sha256"]:
        raise UserError(
            f"{where}: {item['path']} does not match the sha256 in its manifest (changed or "
            "damaged on the way); nothing was imported; copy it again or export a new one"
        )


def _lines(bundle: VerifiedBundle, member: str, where: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(bundle.read(member).decode("utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            raise UserError(f"{where}: line {number} of {member} is not a JSON object")
        rows.append(row)
    return rows


def _contents(
    bundle: VerifiedBundle, manifest: dict[str, Any], members: set[str], where: str
) -> BundleContents:
    try:
        profile = json.loads(bundle.read(PRODUCT))
        if not isinstance(profile, dict) or not isinstance(profile.get("name"), str):
            raise ValueError("no product name")
        images = [_image(row) for row in _lines(bundle, IMAGES, where)]
        revisions = _lines(bundle, REVISIONS, where)
        shas = {image.sha256 for image in images}
        missing = [i.sha256 for i in images if image_member(i) not in members]
        if missing:
            raise ValueError(f"image {missing[0][:12]} has no file in the bundle")
        keys: set[tuple[str, str, int]] = set()
        for revision in revisions:
            _check_revision(revision, shas, members)
            key = (revision["kind"], revision["station"], revision["id"])
            if key in keys:
                raise ValueError(f"revision {key} is listed twice")
            keys.add(key)
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{where} holds a malformed table ({exc}); nothing was imported") from None
    return BundleContents(manifest, profile, images, revisions)


def image_member(image: PortableImage) -> str:
    suffix = PurePosixPath(image.name).suffix.lower()
    return f"images/{image.sha256}{suffix if suffix[1:].isalnum() else ''}"


def mask_member(sha: str) -> str:
    return f"masks/{sha}.mask"


def _image(row: dict[str, Any]) -> PortableImage:
    image = PortableImage(
        sha256=str(row["sha256"]),
        name=str(row["name"]),
        width=int(row["width"]),
        height=int(row["height"]),
        split=check_literal(str(row["split"]), Split, "split"),
        source_label=None if row["source_label"] is None else str(row["source_label"]),
    )
    if len(image.sha256) != 64 or image.width <= 0 or image.height <= 0:
        raise ValueError(f"image {image.name!r} has a bad hash or size")
    return image


def _check_revision(revision: Revision, images: set[str], members: set[str]) -> None:
    kind = revision.get("kind")
    if kind not in TABLES:
        raise ValueError(f"unknown revision kind {kind!r}")
    missing = [k for k in REVISION_FIELDS[kind] if k not in revision]
    if missing:
        raise ValueError(f"a {kind} revision lacks {', '.join(missing)}")
    if not isinstance(revision["station"], str) or not isinstance(revision["id"], int):
        raise ValueError(f"a {kind} revision has a bad key")
    if revision["image"] not in images:
        raise ValueError(f"a {kind} revision concerns an image the bundle does not carry")
    if not isinstance(revision["created_at"], str):
        raise ValueError(f"a {kind} revision has no time")
    if kind == "review":
        check_literal(revision["verdict"], ReviewVerdict, "review verdict")
        if not isinstance(revision["seen"], list):
            raise ValueError("a review's seen is not a list")
        return
    check_revision_source(revision["source"])
    parent = revision["parent"]
    if parent is not None and not (
        isinstance(parent, list) and len(parent) == 2 and isinstance(parent[1], int)
    ):
        raise ValueError(f"a {kind} revision has a bad parent")
    if kind == "mask" and mask_member(str(revision["blob"])) not in members:
        raise ValueError(f"mask {str(revision['blob'])[:12]} has no file in the bundle")
    if kind == "explanation":
        check_literal(revision["verdict"], ExplanationVerdict, "verdict")
        check_literal(revision["severity"], Severity, "severity")
