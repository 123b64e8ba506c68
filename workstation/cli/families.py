"""The ``--families`` option shared by ``synth`` and ``train --kind selftaught``."""

from __future__ import annotations

import argparse


def add_families_option(parser: argparse.ArgumentParser) -> None:
    # The names are spelled out here rather than imported, so ``--help`` stays free of
    # OpenCV; an unknown name is refused by the synthesizer with the real list.
    parser.add_argument(
        "--families",
        default="",
        metavar="A,B,...",
        help="synthetic defect families to draw, equally often (default: all but stain): "
        "patch_blend, foreign_texture, scratch, pit, stain, missing_material",
    )


def parse_families(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())
