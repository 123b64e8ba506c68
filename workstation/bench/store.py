"""``bench store``: import speed, review-queue query latency, mask-revision append rate.

1. import N generated 512x512 PNGs from a flat folder (hash + full decode check + rows);
2. filter a product of 100,000 image rows by score range and review state: one page of
   500 rows (what the review list shows), the count of all matches, and (reported too)
   the whole unpaged match list; median of several runs;
3. append 10,000 mask revisions (each a new 512x512 mask: compressed blob + row, each its
   own committed transaction), once with the blob flushed to disk before its rename (the
   default: survives a power cut) and once without (``fsync_blobs=False``): on a slow
   disk the flush dominates; then in batches of 100 per call (flushed in parallel).

Targets from the issue: >= 100 images/s, <= 50 ms, >= 500 revisions/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

TARGETS = {"import_images_per_s": 100.0, "query_page_ms": 50.0, "mask_revisions_per_s": 500.0}
PAGE = 500
BATCH = 100


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("store", help="store speed: import, queue query, revisions")
    parser.add_argument("--images", type=int, default=2000, help="images to import (2000)")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (512)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows to query (100000)")
    parser.add_argument("--revisions", type=int, default=10_000, help="masks to append (10000)")
    parser.add_argument("--repeats", type=int, default=7, help="query repeats (median)")
    parser.add_argument("--workdir", help="scratch folder (default: a temp folder, removed)")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    parser.set_defaults(handler=run)


def _write_images(folder: Path, count: int, size: int) -> None:
    """Distinct realistic images: demo plates, each made unique by a coded pixel patch."""
    from workstation.core.imageio import encode_png
    from workstation.demo.generator import DemoSpec, render

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    spec = DemoSpec(size=size)
    bases = [render(rng, spec, None)[0] for _ in range(8)]
    for index in range(count):
        image = bases[index % len(bases)].copy()
        code = np.frombuffer(index.to_bytes(4, "little"), dtype=np.uint8)
        image[:2, :2] = code.reshape(2, 2)[:, :, None]
        (folder / f"part_{index:05d}.png").write_bytes(encode_png(image, compression=1))


def bench_import(work: Path, count: int, size: int) -> dict[str, float]:
    from workstation.services.importing import import_directory
    from workstation.store.repository import Store

    folder = work / "images"
    _write_images(folder, count, size)
    with Store.open(work / "import.sqlite") as store:
        started = time.perf_counter()
        report = import_directory(store, folder, product="bench-import")
        elapsed = time.perf_counter() - started
    if report.failures or report.added != count:
        raise RuntimeError(f"benchmark import went wrong: {report.failures[:3]}")
    return {"import_images": count, "import_s": elapsed, "import_images_per_s": count / elapsed}


def bench_query(work: Path, rows: int, repeats: int) -> dict[str, float]:
    from workstation.store.repository import Store
    from workstation.store.rows import NewImage, NewPrediction

    rng = np.random.default_rng(1)
    with Store.open(work / "query.sqlite") as store:
        product = store.create_product("bench-query")
        ids: list[int] = []
        for start in range(0, rows, 5000):
            batch = [
                NewImage(f"/bench/img_{i:06d}.png", f"{i:064x}", 512, 512, "unlabeled", None)
                for i in range(start, min(rows, start + 5000))
            ]
            ids += [r.id for r, _ in store.add_images(product.id, batch)]
            scores = rng.random(len(batch))
            store.add_predictions(
                [
                    NewPrediction(i, "bench", float(s), bool(s > 0.5))
                    for i, s in zip(ids[start:], scores, strict=True)
                ]
            )
        for image_id in rng.choice(ids, size=min(len(ids) // 10, 10_000), replace=False):
            store.add_review(int(image_id), "accepted", reviewer="bench")
        filters = {"review_state": "unreviewed", "score_min": 0.3, "score_max": 0.6}

        def timed(fn: Callable[[], object]) -> float:
            runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                fn()
                runs.append((time.perf_counter() - started) * 1000)
            return statistics.median(runs)

        page = timed(
            lambda: store.query_images(product.id, order_by="score", limit=PAGE, **filters)
        )
        count = timed(lambda: store.count_images(product.id, **filters))
        full = timed(lambda: store.query_images(product.id, order_by="score", **filters))
        matches = store.count_images(product.id, **filters)
    return {
        "query_rows": rows,
        "query_matches": matches,
        "query_page_ms": page,
        "query_count_ms": count,
        "query_page_and_count_ms": page + count,
        "query_all_matches_ms": full,
    }


def _distinct_masks(count: int, size: int, salt: int) -> list[np.ndarray]:
    rng = np.random.default_rng(2 + salt)
    masks = []
    for n in range(count):
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(0, size - 40, size=2)
        mask[y : y + 10 + n % 30, x : x + 40] = 1
        mask[n % size, : 1 + n % 7] = 1
        mask[size - 1, salt] = 1  # the two runs never share a blob
        masks.append(mask)
    return masks


def bench_revisions(work: Path, count: int, size: int) -> dict[str, float]:
    """Append ``count`` masks one call at a time (with and without flushing blob files),
    then in batches of :data:`BATCH` (flushed, as a model writing a folder's masks would)."""
    from workstation.store.repository import Store
    from workstation.store.rows import NewMaskRevision

    results: dict[str, float] = {"mask_revisions": count}
    for salt, (key, fsync) in enumerate(
        (("mask_revisions_per_s", True), ("mask_revisions_per_s_no_fsync", False))
    ):
        masks = _distinct_masks(count, size, salt)
        with Store.open(work / "import.sqlite", fsync_blobs=fsync) as store:
            images = store.list_images(store.get_product("bench-import").id)
            started = time.perf_counter()
            for n, mask in enumerate(masks):
                store.add_mask_revision(
                    images[n % len(images)].id, mask, source="inspector", author="bench"
                )
            results[key] = count / (time.perf_counter() - started)
    masks = _distinct_masks(count, size, 2)
    with Store.open(work / "import.sqlite") as store:
        images = store.list_images(store.get_product("bench-import").id)
        started = time.perf_counter()
        for start in range(0, count, BATCH):
            store.add_mask_revisions(
                [
                    NewMaskRevision(images[n % len(images)].id, masks[n], "expert", "bench")
                    for n in range(start, min(count, start + BATCH))
                ]
            )
        results["mask_revisions_per_s_batched"] = count / (time.perf_counter() - started)
    return results


def run(args: argparse.Namespace) -> int:
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
        results = _run_all(args, work)
    else:
        with tempfile.TemporaryDirectory(prefix="iad-bench-store-") as tmp:
            results = _run_all(args, Path(tmp))
    for key, value in results.items():
        shown = f"{value:.1f}" if isinstance(value, float) else str(value)
        target = TARGETS.get(key)
        verdict = ""
        if target is not None:
            ok = value <= target if key.endswith("_ms") else value >= target
            sign = "<=" if key.endswith("_ms") else ">="
            verdict = f"   (target {sign} {target:g}: {'met' if ok else 'MISSED'})"
        print(f"{key:<28} {shown}{verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


def _run_all(args: argparse.Namespace, work: Path) -> dict[str, object]:
    results: dict[str, object] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count() or 0,
    }
    print(f"importing {args.images} images of {args.size}x{args.size} ...", flush=True)
    results.update(bench_import(work, args.images, args.size))
    print(f"querying {args.rows} rows ...", flush=True)
    results.update(bench_query(work, args.rows, args.repeats))
    print(f"appending {args.revisions} mask revisions ...", flush=True)
    results.update(bench_revisions(work, args.revisions, args.size))
    return results
