"""Tiny random-weight Qwen2-VL folders for tests (explain and training).

The builder lives in the package (``workstation.explain.tiny``) because the explain
benchmark needs it too; this module adds a per-session cache so each test session builds
the model once.
"""

from __future__ import annotations

from pathlib import Path

from workstation.explain.tiny import build_tiny_vlm

__all__ = ["build_tiny_vlm", "tiny_vlm_folder"]

_BUILT: dict[Path, Path] = {}


def tiny_vlm_folder(root: Path) -> Path:
    """A tiny Qwen2-VL model folder under ``root`` (built once per root)."""
    if root not in _BUILT:
        _BUILT[root] = build_tiny_vlm(root / "tiny-qwen2-vl")
    return _BUILT[root]
