"""``iad-workstation bench NAME``: run one benchmark and print (or save) its numbers."""

from __future__ import annotations

import argparse
import importlib

from workstation.bench import BENCH_MODULES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure speed and quality (see `bench -h`)")
    inner = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    for name in BENCH_MODULES:
        importlib.import_module(f"workstation.bench.{name}").register(inner)
