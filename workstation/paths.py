"""Where the application keeps its data, per platform (no Qt needed, so the CLI stays light)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_DIR_NAME = "iad-workstation"


def user_data_dir() -> Path:
    """The platform's per-user data directory; ``IAD_WORKSTATION_HOME`` overrides it."""
    override = os.environ.get("IAD_WORKSTATION_HOME")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / APP_DIR_NAME


def expand_user(value: str | Path) -> Path:
    """``~`` expanded; a ``~name`` of no known user stays as written (a literal folder)."""
    try:
        return Path(value).expanduser()
    except RuntimeError:
        return Path(value)


def default_db_path() -> Path:
    return user_data_dir() / "store" / "workstation.sqlite"


def demo_db_path() -> Path:
    return user_data_dir() / "demo" / "demo.sqlite"


def models_dir() -> Path:
    """Machine-wide downloads (offline bundles); fitted and trained model versions live
    with their store instead (``<store>.models/``)."""
    return user_data_dir() / "models"


def resources_dir() -> Path:
    """Default config, prompt templates, icons; works from a checkout, a wheel and a frozen app."""
    override = os.environ.get("IAD_WORKSTATION_RESOURCES")
    if override:
        return Path(override)
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    bundled = Path(__file__).resolve().parent / "_resources"
    if bundled.is_dir():
        return bundled
    return Path(__file__).resolve().parent.parent / "resources"
