"""Tiny random-weight VLM folders for tests (explain and training).

The builder lives in the package (``workstation.explain.tiny``) because the explain
benchmark needs it too; tests import it from here. Architectures: ``qwen2-vl`` (default),
``qwen2.5-vl`` and ``smolvlm``; each folder loads through the real folder path
(``load_vlm(name, folder=...)`` or ``AutoModelForImageTextToText.from_pretrained``).
"""

from __future__ import annotations

from pathlib import Path

from workstation.explain.tiny import TinyArchitecture, build_tiny_vlm

__all__ = ["TinyArchitecture", "build_tiny_vlm", "tiny_vlm_folder"]


def tiny_vlm_folder(root: Path, architecture: TinyArchitecture = "qwen2-vl") -> Path:
    """Build a tiny model of ``architecture`` in ``root/tiny-<architecture>``."""
    return build_tiny_vlm(root / f"tiny-{architecture}", architecture=architecture)
