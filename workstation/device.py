"""Choosing the torch device: CUDA when present, CPU otherwise (imports torch on call only;
:func:`cuda_driver_present` never does)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from workstation.core.errors import UserError


def resolve_device(preference: str = "auto") -> str:
    import torch

    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"device {preference!r} was requested but CUDA is not available; "
            "set [device] preference = \"auto\" or \"cpu\""
        )
    return preference


def describe_device(device: str) -> str:
    """Short human name for the status bar: ``CPU`` or the GPU's name."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return "CPU"


def cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is installed, known without importing torch.

    Without one CUDA cannot be available, so "auto" means CPU; with one, torch decides.
    """
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia").exists()
    if sys.platform == "win32":
        system = Path(os.environ.get("SYSTEMROOT", r"C:\Windows")) / "System32"
        return (system / "nvcuda.dll").exists()
    return False
