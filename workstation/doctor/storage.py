"""Doctor checks of the data: the store's schema and damage, and the free disk beside it.

Read-only by design: the doctor never creates, migrates or repairs a store; it says what
it found and which command fixes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from workstation.core.checks import CheckResult
from workstation.core.errors import UserError
from workstation.doctor.context import DoctorContext, format_bytes

DISK_REQUIRED_BYTES = 500 * 1024**2
"""Below this the store cannot take a day of heatmaps and masks: the app is unusable."""
DISK_WARN_BYTES = 5 * 1024**3
"""Below this a VLM bundle or a training round will not fit."""


def check_store(context: DoctorContext) -> CheckResult:
    """Where the store is and which schema it has; never creates or migrates it."""
    from workstation.store.db import SCHEMA_VERSION, read_schema_version
    from workstation.store.health import read_station_id, repair_fix

    path = context.db_path
    if not path.exists():
        return CheckResult(
            "store",
            True,
            f"{path} (not created yet; made on first use, schema v{SCHEMA_VERSION})",
        )
    try:
        version = read_schema_version(path)
    except UserError as exc:
        return CheckResult(
            "store",
            False,
            str(exc),
            fix=f"point --db at the right file; if this is your store, {repair_fix(path)}",
        )
    if version > SCHEMA_VERSION:
        return CheckResult(
            "store",
            False,
            f"{path} has schema v{version}; this program knows up to v{SCHEMA_VERSION}",
            fix="update iad-workstation to the version that wrote this store",
        )
    pending = "" if version == SCHEMA_VERSION else f" (upgrades to v{SCHEMA_VERSION} on open)"
    station = read_station_id(path)
    named = f", station {station}" if station else ", station id made on next open"
    return CheckResult("store", True, f"{path} schema v{version}{pending}{named}")


def check_store_damage(context: DoctorContext) -> list[CheckResult]:
    """Pages, write access, blobs and model folders of an existing store (read-only).

    Nothing when the store is not there yet or cannot be read at all: ``check_store``
    has said so already.
    """
    from workstation.store.db import SCHEMA_VERSION, read_schema_version
    from workstation.store.health import check_store_health

    path = context.db_path
    if not path.is_file():
        return []
    try:
        if read_schema_version(path) > SCHEMA_VERSION:
            return []
    except UserError:
        return []
    return check_store_health(path, deep=context.deep)


def _existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def check_disk(context: DoctorContext) -> CheckResult:
    where = _existing_parent(context.db_path)
    free = shutil.disk_usage(where).free
    detail = f"{format_bytes(free)} free at {where}"
    if free < DISK_REQUIRED_BYTES:
        return CheckResult(
            "disk", False, detail, fix="free disk space or move the store (--db PATH)"
        )
    if free < DISK_WARN_BYTES:
        return CheckResult(
            "disk",
            False,
            detail,
            fix="free some space before installing VLM bundles or training",
            severity="optional",
        )
    return CheckResult("disk", True, detail)
