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
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from workstation.config import Settings, load_settings, user_config_path
from workstation.core.checks import CheckResult
from workstation.core.errors import MissingModelError, UserError
from workstation.paths import default_db_path, expand_user, resources_dir

MIN_PYTHON = (3, 11)
DISK_REQUIRED_BYTES = 500 * 1024**2
"""Below this the store cannot take a day of heatmaps and masks: the app is unusable."""
DISK_WARN_BYTES = 5 * 1024**3
"""Below this a VLM bundle or a training round will not fit."""
QT_PROBE_TIMEOUT_S = 60.0
PROBE_SIZE = 64
"""Side of the synthetic images the weight-free pipeline check runs on (fast on any CPU)."""
WEIGHT_FREE_BACKBONE = "filterbank"
WEIGHT_FREE_EXPLAINER = "template"


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


def _format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"


# --- environment ----------------------------------------------------------------------


def check_python(_: DoctorContext) -> CheckResult:
    version = ".".join(str(part) for part in sys.version_info[:3])
    frozen = " (frozen app)" if getattr(sys, "frozen", False) else ""
    ok = sys.version_info[:2] >= MIN_PYTHON
    return CheckResult(
        "python",
        ok,
        f"{version}{frozen} at {sys.executable}",
        fix="" if ok else "install Python 3.11 or newer and reinstall iad-workstation",
    )


def check_resources(_: DoctorContext) -> CheckResult:
    root = resources_dir()
    config = root / "default_config.toml"
    if not config.is_file():
        return CheckResult(
            "resources",
            False,
            f"{config} is missing",
            fix="reinstall the application (its resources folder is incomplete)",
        )
    return CheckResult("resources", True, str(root))


def check_torch(context: DoctorContext) -> list[CheckResult]:
    """torch imports; CUDA is reported (device, free memory) but never required."""
    try:
        import torch
    except ImportError as exc:
        return [
            CheckResult(
                "torch", False, f"cannot import torch: {exc}", fix="pip install torch"
            )
        ]
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    results = [CheckResult("torch", True, f"{torch.__version__} ({build})")]
    preference = context.settings.device.preference
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
        results.append(
            CheckResult(
                "cuda",
                True,
                f"{name}: {_format_bytes(free)} free of {_format_bytes(total)}",
                severity="optional",
            )
        )
    elif preference.startswith("cuda"):
        results.append(
            CheckResult(
                "cuda",
                False,
                f"[device] preference = {preference!r} but CUDA is not available",
                fix='set [device] preference = "auto" in the user config.toml, '
                "or install an NVIDIA driver and a CUDA build of torch",
            )
        )
    else:
        results.append(
            CheckResult(
                "cuda",
                True,
                "not available: models run on the CPU (slower; VLM explanations are slow)",
                severity="optional",
            )
        )
    return results


MODEL_LIBRARIES: tuple[tuple[str, str], ...] = (
    ("torchvision", "DINOv2/CLIP image transforms"),
    ("open_clip", "CLIP backbones and the zero-shot expert"),
    ("transformers", "DINOv2 backbones and VLM explainers"),
    ("peft", "LoRA adapters from training rounds"),
)


def check_model_libraries(_: DoctorContext) -> list[CheckResult]:
    """The libraries behind the downloadable models import cleanly.

    Optional, since the weight-free defaults need none of them, but this is where a
    packaged app that "loads from source but crashes installed" shows up: a module left
    out of the bundle, or a torchvision built for a different torch.
    """
    import importlib

    results = []
    for module, purpose in MODEL_LIBRARIES:
        try:
            loaded = importlib.import_module(module)
        except Exception as exc:  # any import-time failure disables the same features
            results.append(
                CheckResult(
                    module,
                    False,
                    f"cannot be imported ({type(exc).__name__}: {exc}); needed for {purpose}",
                    fix="install torch, torchvision and this library from one release line "
                    "(same pip index), then reinstall or rebuild the app",
                    severity="optional",
                )
            )
            continue
        results.append(CheckResult(module, True, str(getattr(loaded, "__version__", "ok"))))
    return results


def check_opencv(_: DoctorContext) -> CheckResult:
    try:
        import cv2
        import numpy as np
    except ImportError as exc:
        return CheckResult(
            "opencv", False, f"cannot import cv2: {exc}", fix="pip install opencv-python-headless"
        )
    blurred = cv2.GaussianBlur(np.zeros((8, 8), np.float32), (3, 3), 1.0)
    return CheckResult("opencv", bool(blurred.shape == (8, 8)), cv2.__version__)


def qt_probe_command() -> list[str]:
    """The child process that opens a Qt GUI application and exits.

    ``python -m workstation`` from a checkout; a frozen app has no separate interpreter, so
    its entry point honours the same ``-m workstation`` (see ``packaging/entry.py``).
    """
    return [sys.executable, "-m", "workstation", "doctor", "--qt-probe"]


def _has_display(environ: dict[str, str]) -> bool:
    if sys.platform != "linux":
        return True
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def check_qt(_: DoctorContext) -> CheckResult:
    environ = dict(os.environ)
    note = ""
    if not environ.get("QT_QPA_PLATFORM") and not _has_display(environ):
        # Without a display Qt's default (xcb) aborts; probe what does work and say why the
        # window cannot open here.
        environ["QT_QPA_PLATFORM"] = "offscreen"
        note = "; no display here (DISPLAY/WAYLAND_DISPLAY unset): the window needs one"
    try:
        done = subprocess.run(
            qt_probe_command(),
            env=environ,
            capture_output=True,
            text=True,
            timeout=QT_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return CheckResult(
            "qt",
            False,
            f"starting a Qt application took longer than {QT_PROBE_TIMEOUT_S:.0f} s",
            fix="check the display connection; run with QT_DEBUG_PLUGINS=1 to see what hangs",
        )
    output = (done.stdout + done.stderr).strip().splitlines()
    platform = next((ln.split("=", 1)[1] for ln in output if ln.startswith("platform=")), "")
    if done.returncode == 0 and platform:
        return CheckResult("qt", True, f"platform plugin {platform!r} works{note}")
    # Qt's own words: "Could not find/load the Qt platform plugin ..." says what broke.
    reason = next(
        (ln for ln in output if "could not" in ln.lower()),
        output[-1] if output else f"exit code {done.returncode}",
    )
    return CheckResult(
        "qt",
        False,
        f"Qt cannot start: {reason}",
        fix="install the X11/Wayland client libraries (Debian/Ubuntu: apt install libegl1 "
        "libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0), "
        "or set QT_QPA_PLATFORM=offscreen for headless use",
    )


# --- data -------------------------------------------------------------------------------


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
    detail = f"{_format_bytes(free)} free at {where}"
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


# --- models -----------------------------------------------------------------------------


def _synthetic_images() -> tuple[list, list]:
    """Textured normal images, and a normal plus a defective one to score (seeded)."""
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.integers(90, 130, size=(PROBE_SIZE, PROBE_SIZE, 3), dtype=np.uint8)

    def jittered():
        noise = rng.integers(-4, 5, base.shape)
        return np.clip(base.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    normals = [jittered() for _ in range(3)]
    defect = jittered()
    defect[24:36, 24:36] = 250
    return normals, [jittered(), defect]


def check_weight_free_pipeline(_: DoctorContext) -> CheckResult:
    """The default that needs no downloads: filter-bank few-shot expert + template explainer.

    It must not only run but rank a synthetic defect above a normal image; an expert that
    loads but scores garbage (e.g. a broken OpenCV in the bundle) fails here.
    """
    from workstation.experts.base import build_backbone
    from workstation.experts.fewshot import FewShotConfig, FewShotExpert
    from workstation.explain.template import explain

    normals, (normal, defect) = _synthetic_images()
    expert = FewShotExpert(
        build_backbone(WEIGHT_FREE_BACKBONE, device="cpu"),
        FewShotConfig(image_size=PROBE_SIZE, memory_budget=0),
    )
    expert.fit(normals)
    normal_map, defect_map = expert.predict([normal, defect])
    explanation = explain(defect_map)
    ok = defect_map.score > normal_map.score and bool(explanation.description)
    return CheckResult(
        "weight-free models",
        ok,
        f"{WEIGHT_FREE_BACKBONE} few-shot expert and {WEIGHT_FREE_EXPLAINER} explainer run "
        f"offline (synthetic defect {defect_map.score:.3g} vs normal {normal_map.score:.3g})",
        fix="" if ok else "reinstall the application; the built-in expert gives wrong scores",
    )


def configured_models(settings: Settings) -> list[tuple[str, str]]:
    """``(role, model name)`` for every model the settings ask for that needs weights."""
    from workstation.services.explain import vlm_name

    wanted: list[tuple[str, str]] = []
    if "fewshot" in settings.experts.enabled and settings.experts.backbone != WEIGHT_FREE_BACKBONE:
        wanted.append(("few-shot backbone", settings.experts.backbone))
    if "zeroshot" in settings.experts.enabled:
        wanted.append(("zero-shot CLIP", settings.experts.clip_model))
    vlm = vlm_name(settings.explainer)
    if vlm is not None:
        wanted.append(("explainer VLM", vlm))
    return wanted


def _short_hash(bundle_files: Sequence) -> str:
    """The sha256 of the bundle's largest file (its weights), which identifies the model."""
    largest = max(bundle_files, key=lambda f: f.size)
    return f"{largest.path} sha256 {largest.sha256[:16]}"


def check_bundles(context: DoctorContext) -> list[CheckResult]:
    """Installed offline bundles with the hash of their weights (re-hashed with --verify)."""
    from workstation.pretrained.bundles import installed_bundles
    from workstation.pretrained.weights import bundles_dir

    bundles = installed_bundles(verify=context.verify_hashes)
    if not bundles:
        return [CheckResult("bundles", True, f"none installed in {bundles_dir()}")]
    results = []
    for bundle in bundles:
        if bundle.problem:
            results.append(
                CheckResult(
                    f"bundle {bundle.name}", False, bundle.problem, severity="optional"
                )
            )
            continue
        state = {None: "not re-hashed", True: "hashes verified", False: "hashes DIFFER"}[
            bundle.hashes_ok
        ]
        results.append(
            CheckResult(
                f"bundle {bundle.name}",
                bundle.hashes_ok is not False,
                f"{bundle.family}, {len(bundle.files)} files, "
                f"{_format_bytes(bundle.size_bytes)}, {_short_hash(bundle.files)}, {state}",
                fix=f"reinstall it: iad-workstation models install {bundle.name}.zip",
                severity="optional",
            )
        )
    return results


def _load_backbone(name: str, image_size: int) -> str:
    """Build the backbone on the CPU and run one image at its native size through it."""
    import cv2

    from workstation.experts.base import build_backbone

    backbone = build_backbone(name, device="cpu")
    normals, _ = _synthetic_images()
    image = cv2.resize(normals[0], (image_size, image_size))
    features = backbone.features([image])
    return f"loads ({features.shape[1]} feature channels)"


def _load_vlm_parts(folder: Path) -> str:
    """Config, processor and model class of a VLM, without reading its (GB of) weights.

    Enough to catch what breaks in a packaged app (a transformers model module or a
    processor file left out) without needing the RAM to hold the model.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    config = AutoConfig.from_pretrained(folder)
    model_class = AutoModelForImageTextToText._model_mapping[type(config)]
    AutoProcessor.from_pretrained(folder)
    return f"{model_class.__name__} and its processor load"


def check_models(context: DoctorContext) -> list[CheckResult]:
    """Every catalogue model: where it is, or the one line that says how to get it.

    Configured backbones are also built and run on one image, and a configured VLM's
    config, processor and model class are loaded (not its weights). Missing weights are
    ``optional``: the weight-free defaults keep the application working.
    """
    from workstation.pretrained.catalog import catalog_names, find_entry
    from workstation.pretrained.weights import resolve

    roles = {name: role for role, name in configured_models(context.settings)}
    results = []
    for name in dict.fromkeys([*roles, *catalog_names()]):
        role = f"; configured as {roles[name]}" if name in roles else ""
        try:
            found = resolve(name)
        except MissingModelError as exc:
            results.append(
                CheckResult(
                    f"model {name}", False, f"missing{role}", fix=str(exc), severity="optional"
                )
            )
            continue
        except UserError as exc:  # e.g. a configured folder without weights
            results.append(
                CheckResult(
                    f"model {name}",
                    False,
                    f"unusable{role}: {exc}",
                    fix="point the setting at a complete model folder or install its bundle",
                    severity="optional",
                )
            )
            continue
        detail = f"{found.origin}: {found.path}{role}"
        entry = find_entry(name)
        if name in roles:
            try:
                if found.family == "vlm":
                    detail += f"; {_load_vlm_parts(found.path)}"
                elif entry is not None:
                    detail += f"; {_load_backbone(name, entry.image_size)}"
            except (UserError, RuntimeError, OSError, ValueError, KeyError) as exc:
                results.append(
                    CheckResult(
                        f"model {name}",
                        False,
                        f"{detail}; does not load: {exc}",
                        fix=f"reinstall it: iad-workstation models install {name}.zip",
                        severity="optional",
                    )
                )
                continue
        results.append(CheckResult(f"model {name}", True, detail))
    return results


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
