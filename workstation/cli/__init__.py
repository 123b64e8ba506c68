"""Command-line subcommands, one module each.

Each module defines ``register(subparsers)``; handlers import heavy libraries inside the
handler so that ``iad-workstation --help`` stays fast.
"""

from __future__ import annotations

COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "importing",
    "exporting",
    "inspect",
    "eval",
    "bench",
    "train",
    "synth",
    "models",
    "sync",
    "doctor",
    "repair",
    "search",
)
