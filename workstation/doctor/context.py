"""What every doctor check receives, and the byte formatting their findings share.

Why a module of its own: the checks live in modules by subject (environment, storage,
models) and the runner in the package; all of them need this context and nothing else of
each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workstation.config import Settings
from workstation.core.checks import CheckResult


@dataclass(frozen=True)
class DoctorContext:
    """What the checks look at: the settings in force and the store the app would open."""

    settings: Settings
    db_path: Path
    verify_hashes: bool = False
    """Re-hash every installed bundle file (minutes for a VLM), not just read manifests."""
    deep: bool = False
    """Full SQLite integrity check and a re-hash of every blob (slow on a big store)."""


CheckFn = Callable[[DoctorContext], "CheckResult | list[CheckResult]"]


def format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"
