"""What starts fast stays fast: the CLI and the main window import no torch, and the device
check the window makes at start needs none either."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workstation import device

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "open_clip", "peft")


@pytest.mark.parametrize(
    "modules",
    [
        ("workstation.__main__", "workstation.cli.train", "workstation.cli.model_versions"),
        ("workstation.gui.main_window", "workstation.gui.models_panel"),
        ("workstation.core.kinds", "training.contract", "training.kinds.adapter",
         "training.kinds.selftaught", "training.kinds.vlm"),
    ],
)
def test_importing_loads_no_heavy_library(modules: tuple[str, ...]) -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen", "PATH": ""},
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_building_a_kinds_default_hyperparameters_needs_no_torch() -> None:
    code = (
        "import sys\n"
        "from workstation.core import kinds\n"
        "[k.hyperparameters({}) for k in kinds.all_kinds()]\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": ""}, timeout=120, check=True,
    )
    assert result.stdout.strip() == "False"


def test_cuda_driver_check_reads_the_platforms_driver_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(device.sys, "platform", "darwin")
    assert device.cuda_driver_present() is False
    monkeypatch.setattr(device.sys, "platform", "win32")
    monkeypatch.setenv("SYSTEMROOT", str(tmp_path))
    assert device.cuda_driver_present() is False
    (tmp_path / "System32").mkdir()
    (tmp_path / "System32" / "nvcuda.dll").write_bytes(b"")
    assert device.cuda_driver_present() is True
    monkeypatch.setattr(device.sys, "platform", "linux")
    assert device.cuda_driver_present() is Path("/proc/driver/nvidia").exists()
