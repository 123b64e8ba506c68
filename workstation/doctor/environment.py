"""Doctor checks of the machine and the install: Python, resources, torch/CUDA, libraries, Qt.

No Qt here: the Qt check starts a child process (``doctor --qt-probe``), because a
missing platform plugin makes Qt abort the whole process, and a headless machine must
get an answer, not a crash or a hang.
"""

from __future__ import annotations

import os
import subprocess
import sys

from workstation.core.checks import CheckResult
from workstation.doctor.context import DoctorContext, format_bytes
from workstation.paths import resources_dir

MIN_PYTHON = (3, 11)
QT_PROBE_TIMEOUT_S = 60.0


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
        return [CheckResult("torch", False, f"cannot import torch: {exc}", fix="pip install torch")]
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
                f"{name}: {format_bytes(free)} free of {format_bytes(total)}",
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
