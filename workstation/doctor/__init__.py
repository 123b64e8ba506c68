"""Health checks behind ``iad-workstation doctor`` and the frozen app's ``--self-check``.

Why it exists: a packaged app fails in ways a checkout never does (a Qt plugin or a lazily
imported module left out of the bundle, no display, a store from a newer version, models
that were never carried across the air gap). Each check is a small function that returns
a :class:`CheckResult` saying what it found and, when something is wrong, the fix in one
line. ``required`` checks are what the weight-free application needs to run; ``optional``
ones (CUDA, downloadable models) only limit what it can do, so they never fail the run.

No Qt here: the Qt check starts a child process (``doctor --qt-probe``), because a
missing platform plugin makes Qt abort the whole process, and a headless machine must
get an answer, not a crash or a hang.

The checks live by subject in ``environment``, ``storage`` and ``models``; this package
runs them in order (:data:`DEFAULT_CHECKS`) and turns the findings into the exit code and
the report.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from workstation.config import Settings, load_settings, user_config_path
from workstation.core.checks import CheckResult
from workstation.core.errors import UserError
from workstation.doctor.context import CheckFn, DoctorContext
from workstation.doctor.environment import (
    check_model_libraries,
    check_opencv,
    check_python,
    check_qt,
    check_resources,
    check_torch,
)
from workstation.doctor.models import check_bundles, check_models, check_weight_free_pipeline
from workstation.doctor.storage import check_disk, check_store, check_store_damage
from workstation.paths import default_db_path, expand_user

DEFAULT_CHECKS: tuple[CheckFn, ...] = (
    check_python,
    check_resources,
    check_torch,
    check_opencv,
    check_model_libraries,
    check_qt,
    check_store,
    check_store_damage,
    check_disk,
    check_weight_free_pipeline,
    check_bundles,
    check_models,
)


def _crashed(check: CheckFn, exc: BaseException) -> CheckResult:
    """A check that raised still yields one line; the doctor itself never shows a traceback."""
    name = check.__name__.removeprefix("check_").replace("_", " ")
    if isinstance(exc, UserError):
        return CheckResult(name, False, str(exc), fix="see the message above")
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    origin = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return CheckResult(
        name,
        False,
        f"{type(exc).__name__}: {exc}{origin}",
        fix="reinstall the application; if it persists, report this line",
    )


def run_checks(
    context: DoctorContext, checks: Sequence[CheckFn] | None = None
) -> list[CheckResult]:
    """Run ``checks`` (default: :data:`DEFAULT_CHECKS`) in order, never raising."""
    results: list[CheckResult] = []
    for check in DEFAULT_CHECKS if checks is None else checks:
        try:
            outcome = check(context)
        except Exception as exc:  # a broken check is a finding, not a crash
            outcome = _crashed(check, exc)
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    return results


def build_context(
    db: str | Path | None = None, *, verify_hashes: bool = False, deep: bool = False
) -> tuple[DoctorContext, list[CheckResult]]:
    """Settings and store path; a broken user config is itself a (required) finding."""
    findings: list[CheckResult] = []
    try:
        settings = load_settings()
    except UserError as exc:
        settings = Settings()
        user_file = user_config_path()
        fix = (
            f"fix or remove {user_file}"
            if user_file.is_file()
            else "reinstall the application: its default_config.toml does not match it"
        )
        findings.append(CheckResult("settings", False, str(exc), fix=fix))
    else:
        findings.append(CheckResult("settings", True, "loaded"))
    path = expand_user(db) if db else default_db_path()
    context = DoctorContext(settings=settings, db_path=path, verify_hashes=verify_hashes, deep=deep)
    return context, findings


def exit_code(results: Sequence[CheckResult]) -> int:
    """1 when something required is broken, else 0 (missing optional models are fine)."""
    return 1 if any(r.blocking for r in results) else 0


def format_report(results: Sequence[CheckResult]) -> str:
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for result in results:
        tag = " OK " if result.ok else "FAIL" if result.blocking else "WARN"
        lines.append(f"[{tag}] {result.name:<{width}}  {result.detail}")
        if not result.ok and result.fix:
            lines.append(f"       {'':<{width}}  fix: {result.fix}")
    blocking = sum(r.blocking for r in results)
    warnings = sum(not r.ok and not r.blocking for r in results)
    lines.append(
        f"{blocking} problem(s) to fix, {warnings} optional item(s) missing"
        if blocking or warnings
        else "all checks passed"
    )
    return "\n".join(lines)


def report_dicts(results: Sequence[CheckResult]) -> list[dict[str, object]]:
    return [asdict(r) | {"blocking": r.blocking} for r in results]
