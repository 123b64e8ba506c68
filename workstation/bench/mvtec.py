"""The benchmarks read MVTec-layout folders with the shared reader of ``datasets.mvtec``.

Kept as the name the learning benchmarks and ``training/demo_model.py`` import it by.
"""

from __future__ import annotations

from workstation.datasets.mvtec import LabeledImage, MVTecCategory, load_category

__all__ = ["LabeledImage", "MVTecCategory", "load_category"]
