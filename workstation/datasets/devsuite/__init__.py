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
    """Build every source (or the named ones) under ``out`` and list them in ``out/READY``."""
    chosen = _choose(names)
    caps = caps or SplitCaps()
    written = []
    for source in chosen:
        samples = list(source.read(source.root(sources)))
        if not samples:
            raise UserError(f"{source.root(sources)} holds no images of {source.name}")
        written.append(write_category(source, samples, out, caps))
    ready = "".join(f"{w.category.parent.name}\t{w.category}\n" for w in written)
    (out / "READY").write_text(ready)
    return written


def _choose(names: tuple[str, ...]) -> list[Source]:
    known = {s.name: s for s in SOURCES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown set(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names] if names else list(SOURCES)


__all__ = ["SOURCES", "SplitCaps", "build"]
