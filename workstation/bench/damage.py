"""``bench damage``: how much ``repair`` saves from a store damaged in known ways.

A station is built as ``bench sync`` builds one (N images with masks, texts and
verdicts), its log checkpointed into the file, then copied once per case and damaged:

* ``cut-4k``: the last 4 KB page cut off; ``cut-1%``, ``cut-10%``, ``cut-50%``: that
  share of the file cut off its end;
* ``flip-<seed>``: 64 random bytes (seeded) overwritten in the last quarter of the file;
* ``schema``: bytes of the ``images`` table's schema text overwritten with 0xFF (no
  longer UTF-8).

Each damaged copy is salvaged with ``store.salvage.salvage_store``; reported per case:
the share of image rows and of all rows saved (against the undamaged counts), and what
stopped the salvage when it did not finish.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import numpy as np

from workstation.bench.scratch import emit, in_scratch

CUTS = {"cut-4k": 4096, "cut-1%": 0.01, "cut-10%": 0.10, "cut-50%": 0.50}
FLIP_SEEDS = range(6)
FLIPPED_BYTES = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("damage", help="rows `repair` saves from damaged stores")
    parser.add_argument("--images", type=int, default=2000, help="images (2000)")
    parser.add_argument("--revisions", type=int, default=6000, help="revisions (6000)")
    parser.add_argument("--workdir", help="scratch folder (default: a temp folder, removed)")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    parser.set_defaults(handler=run)


def _copy_store(source: Path, folder: Path) -> Path:
    from workstation.store.blobs import store_blobs_dir
    from workstation.store.model_files import store_models_dir

    folder.mkdir(parents=True)
    target = folder / source.name
    shutil.copyfile(source, target)
    for sibling in (store_blobs_dir, store_models_dir):
        if sibling(source).is_dir():
            shutil.copytree(sibling(source), sibling(target))
    return target


def _damage(db: Path, case: str) -> None:
    data = bytearray(db.read_bytes())
    if case in CUTS:
        share = CUTS[case]
        cut = share if isinstance(share, int) else int(len(data) * share) // 4096 * 4096
        del data[len(data) - cut :]
    elif case.startswith("flip-"):
        rng = np.random.default_rng(int(case.split("-")[1]))
        start = len(data) * 3 // 4
        for offset in rng.integers(start, len(data), FLIPPED_BYTES):
            data[int(offset)] = int(rng.integers(0, 256))
    else:  # schema
        found = re.search(rb"CREATE TABLE \W?images\W", data)
        where = found.start() if found else data.find(b"CREATE TABLE")
        for offset in range(where + 6, where + 40, 4):
            data[offset] = 0xFF
    db.write_bytes(bytes(data))


def _case(source: Path, work: Path, case: str, before: dict[str, int]) -> dict[str, object]:
    from workstation.core.errors import UserError
    from workstation.store.errors import SQLITE_READ_ERRORS
    from workstation.store.health import row_counts
    from workstation.store.salvage import salvage_store

    damaged = _copy_store(source, work / case)
    _damage(damaged, case)
    new = work / case / "repaired.sqlite"
    try:
        report = salvage_store(damaged, new)
    except (UserError, OSError, *SQLITE_READ_ERRORS) as exc:
        return {"case": case, "images_saved": 0.0, "rows_saved": 0.0, "stopped": str(exc)}
    after = row_counts(new)
    total = sum(before.values())
    return {
        "case": case,
        "images_saved": after.get("images", 0) / max(before.get("images", 0), 1),
        "rows_saved": sum(min(after.get(t, 0), n) for t, n in before.items()) / max(total, 1),
        "rebuilt_from_indexes": sum(t.rebuilt for t in report.tables),
        "complete": report.complete,
        "stopped": "",
    }


def bench_damage(work: Path, images: int, revisions: int) -> dict[str, dict[str, object]]:
    from workstation.bench.sync import build_station
    from workstation.store.health import row_counts

    source = build_station(work / "station", images, revisions, 32)  # closed: log folded in
    before = row_counts(source)
    cases = [*CUTS, *(f"flip-{seed}" for seed in FLIP_SEEDS), "schema"]
    return {case: _case(source, work / "cases", case, before) for case in cases}


def run(args: argparse.Namespace) -> int:
    if args.images < 10 or args.revisions < 0:
        from workstation.core.errors import UserError

        raise UserError("bench damage needs --images >= 10 and --revisions >= 0")
    print(f"building a station with {args.images} images ...", flush=True)
    rows = in_scratch(
        args.workdir, "iad-bench-damage-", lambda w: bench_damage(w, args.images, args.revisions)
    )
    head = f"{'case':<10} {'images saved':>12} {'rows saved':>10} {'rebuilt':>8}  stopped by"
    return emit(
        [head]
        + [
            f"{r['case']:<10} {r['images_saved']:>12.1%} {r['rows_saved']:>10.1%} "
            f"{r.get('rebuilt_from_indexes', 0):>8}  {r['stopped'] or '-'}"
            for r in rows.values()
        ],
        rows,
        args.json,
    )
