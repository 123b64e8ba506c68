"""The development suite: public industrial anomaly sets with pixel masks, rebuilt in the
MVTec layout from local clones of their repositories, so that defaults are chosen by the
worst of several real sets rather than tuned to one (``python -m workstation.datasets.devsuite
build --sources DIR --out DIR``; sources, licences and the split rule in ``sources.py``)."""

from __future__ import annotations

from pathlib import Path

from workstation.core.errors import UserError
from workstation.datasets.devsuite.build import SplitCaps, Written, write_category
from workstation.datasets.devsuite.sources import SOURCES, Source


def build(
    sources: Path, out: Path, names: tuple[str, ...] = (), caps: SplitCaps | None = None
) -> list[Written]:
    """Build every source (or the named ones) under ``out`` and list them in ``out/READY``
    (lines of sets built before, and not rebuilt now, are kept: ``--only`` adds a set)."""
    chosen = _choose(names)
    caps = caps or SplitCaps()
    written = []
    for source in chosen:
        samples = list(source.read(source.root(sources)))
        if not samples:
            raise UserError(f"{source.root(sources)} holds no images of {source.name}")
        written.append(write_category(source, samples, out, caps))
    entries = _ready_entries(out / "READY")
    entries.update({w.category.parent.name: str(w.category) for w in written})
    (out / "READY").write_text("".join(f"{name}\t{path}\n" for name, path in entries.items()))
    return written


def _ready_entries(ready: Path) -> dict[str, str]:
    if not ready.is_file():
        return {}
    lines = (line.partition("\t") for line in ready.read_text().splitlines())
    return {name: path for name, _, path in lines if name and path}


def _choose(names: tuple[str, ...]) -> list[Source]:
    known = {s.name: s for s in SOURCES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown set(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names] if names else list(SOURCES)


__all__ = ["SOURCES", "SplitCaps", "build"]
