"""The tables of a feedback bundle, checked field by field before the merge sees them.

Every field has a type and a bound; every field that later becomes a path (the image's
content hash, its name, its label, the product's name, a defect type that ``export``
turns into a folder) must match a strict pattern (:mod:`workstation.core.untrusted`).
Anything else is refused as ``this bundle is malformed: <field>: <why>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workstation.core import untrusted as u
from workstation.core.types import (
    ExplanationVerdict,
    ReviewVerdict,
    Severity,
    Split,
    check_literal,
    check_revision_source,
)
from workstation.store.exchange import REVISION_FIELDS, TABLES, PortableImage, Revision
from workstation.sync.bundle import (
    FEEDBACK,
    IMAGES,
    PRODUCT,
    REVISIONS,
    BundleContents,
    VerifiedBundle,
    image_member,
    mask_member,
    open_verified,
    parse_json,
)

SHORT_TEXT = 200
"""Authors, reviewers, model versions, times, locations: one line of a form."""
LONG_TEXT = 100_000
"""Free text: descriptions, reasons."""
MAX_SEEN = 100_000


@contextmanager
def open_bundle(path: Path) -> Iterator[tuple[VerifiedBundle, BundleContents]]:
    """A verified feedback bundle and its parsed, checked tables."""
    with open_verified(path, FEEDBACK) as (bundle, manifest):
        for required in (PRODUCT, IMAGES, REVISIONS):
            if not bundle.has(required):
                raise u.MalformedBundle(required, "is missing from the bundle")
        yield bundle, contents(bundle, manifest)


def contents(bundle: VerifiedBundle, manifest: dict[str, Any]) -> BundleContents:
    most = u.limits().table_bytes
    for table in (PRODUCT, IMAGES, REVISIONS):  # parsed in memory: bounded apart
        if bundle.size(table) > most:
            raise u.MalformedBundle(
                table,
                f"is {bundle.size(table)} bytes (at most {most}: [limits] max_bundle_table_mb)",
            )
    profile = _profile(parse_json(bundle.read(PRODUCT), PRODUCT), manifest)
    images = [_image(row, f"{IMAGES} line {n}") for n, row in _lines(bundle, IMAGES)]
    shas = {image.sha256 for image in images}
    if len(shas) != len(images):
        raise u.MalformedBundle(IMAGES, "lists an image twice")
    members = bundle.members()
    for image in images:
        if image_member(image) not in members:
            raise u.MalformedBundle(IMAGES, f"image {image.sha256[:12]} has no file in the bundle")
    revisions: list[Revision] = []
    keys: set[tuple[str, str, int]] = set()
    for n, row in _lines(bundle, REVISIONS):
        revision = _revision(row, f"{REVISIONS} line {n}", shas, members)
        key = (revision["kind"], revision["station"], revision["id"])
        if key in keys:
            raise u.MalformedBundle(f"{REVISIONS} line {n}", f"revision {key} is listed twice")
        keys.add(key)
        revisions.append(revision)
    return BundleContents(manifest, profile, images, revisions)


def _lines(bundle: VerifiedBundle, member: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        text = bundle.read(member).decode("utf-8")
    except UnicodeDecodeError:
        raise u.MalformedBundle(member, "is not UTF-8 text") from None
    for number, line in enumerate(text.splitlines(), start=1):
        row = parse_json(line.encode(), f"{member} line {number}")
        if not isinstance(row, dict):
            raise u.MalformedBundle(f"{member} line {number}", "is not a JSON object")
        yield number, row


def _profile(profile: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    name = u.name(u.require(profile, "name", PRODUCT), f"{PRODUCT}.name")
    if name != manifest.get("product"):
        raise u.MalformedBundle(f"{PRODUCT}.name", "differs from the manifest's product")
    return {
        "name": name,
        "description": u.text(profile.get("description", ""), f"{PRODUCT}.description"),
        "normality_rules": u.texts(
            profile.get("normality_rules", []), f"{PRODUCT}.normality_rules"
        ),
        "defect_vocabulary": [
            u.name(v, f"{PRODUCT}.defect_vocabulary[{n}]")
            for n, v in enumerate(
                u.texts(profile.get("defect_vocabulary", []), f"{PRODUCT}.defect_vocabulary")
            )
        ],
    }


def _literal(value: Any, allowed: object, field: str) -> str:
    try:
        return check_literal(u.text(value, field, max_chars=SHORT_TEXT), allowed, field)
    except ValueError as exc:
        raise u.MalformedBundle(field, u.echo(str(exc), 120)) from None


def _image(row: dict[str, Any], where: str) -> PortableImage:
    side = int(u.limits().image_pixels)
    width = u.integer(u.require(row, "width", where), f"{where}.width", low=1, high=side)
    height = u.integer(u.require(row, "height", where), f"{where}.height", low=1, high=side)
    if width * height > u.limits().image_pixels:
        raise u.MalformedBundle(
            f"{where}.width", f"{width}x{height} pixels is above the image limit"
        )
    return PortableImage(
        sha256=u.sha256(u.require(row, "sha256", where), f"{where}.sha256"),
        name=u.name(u.require(row, "name", where), f"{where}.name"),
        width=width,
        height=height,
        split=_literal(u.require(row, "split", where), Split, f"{where}.split"),
        source_label=u.name(
            u.require(row, "source_label", where), f"{where}.source_label", optional=True
        ),
    )


def _key(value: Any, field: str) -> list[Any]:
    if not (isinstance(value, list) and len(value) == 2):
        raise u.MalformedBundle(field, "must be [station, id]")
    return [u.station(value[0], f"{field}[0]"), u.integer(value[1], f"{field}[1]", low=1)]


def _revision(row: dict[str, Any], where: str, images: set[str], members: set[str]) -> Revision:
    kind = row.get("kind")
    if not isinstance(kind, str) or kind not in TABLES:
        raise u.MalformedBundle(f"{where}.kind", f"unknown revision kind {u.echo(kind)}")
    for key in REVISION_FIELDS[kind]:
        u.require(row, key, where)
    out: Revision = {
        "kind": kind,
        "station": u.station(row["station"], f"{where}.station"),
        "id": u.integer(row["id"], f"{where}.id", low=1),
        "image": u.sha256(row["image"], f"{where}.image"),
        "created_at": u.text(row["created_at"], f"{where}.created_at", max_chars=SHORT_TEXT),
        "model_version": u.text(
            row["model_version"], f"{where}.model_version", max_chars=SHORT_TEXT, optional=True
        ),
    }
    if out["image"] not in images:
        raise u.MalformedBundle(f"{where}.image", "is an image the bundle does not carry")
    if kind == "review":
        seen = row["seen"]
        return out | {
            "verdict": _literal(row["verdict"], ReviewVerdict, f"{where}.verdict"),
            "reason": u.text(row["reason"], f"{where}.reason"),
            "reviewer": u.text(row["reviewer"], f"{where}.reviewer", max_chars=SHORT_TEXT),
            "seen": u.texts(seen, f"{where}.seen", max_items=MAX_SEEN, max_chars=SHORT_TEXT),
        }
    source = u.text(row["source"], f"{where}.source", max_chars=SHORT_TEXT)
    try:
        check_revision_source(source)
    except ValueError as exc:
        raise u.MalformedBundle(f"{where}.source", u.echo(str(exc), 120)) from None
    out |= {
        "source": source,
        "author": u.text(row["author"], f"{where}.author", max_chars=SHORT_TEXT),
        "parent": None if row["parent"] is None else _key(row["parent"], f"{where}.parent"),
    }
    if kind == "mask":
        blob = u.sha256(row["blob"], f"{where}.blob")
        if mask_member(blob) not in members:
            raise u.MalformedBundle(f"{where}.blob", f"mask {blob[:12]} has no file in the bundle")
        return out | {"blob": blob}
    defect = u.text(row["defect_type"], f"{where}.defect_type", max_chars=SHORT_TEXT, optional=True)
    if defect:  # ``export`` makes a folder of it
        u.name(defect, f"{where}.defect_type")
    severity = row["severity"]
    return out | {
        "verdict": _literal(row["verdict"], ExplanationVerdict, f"{where}.verdict"),
        "defect_type": defect,
        "location": u.text(
            row["location"], f"{where}.location", max_chars=SHORT_TEXT, optional=True
        ),
        "severity": None if severity is None else _literal(severity, Severity, f"{where}.severity"),
        "description": u.text(
            row["description"], f"{where}.description", max_chars=LONG_TEXT, optional=True
        ),
    }
