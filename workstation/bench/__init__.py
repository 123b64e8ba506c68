"""Benchmarks behind ``iad-workstation bench <name>``: one module each, with ``register(sub)``.

Benchmarks measure; tests never assert timings.
"""

from __future__ import annotations

BENCH_MODULES: tuple[str, ...] = (
    "store",
    "expert",
    "explain",
    "gui",
    "onboard",
    "active",
    "training",
    "sync",
    "damage",
    "hostile",
    "large",
)
