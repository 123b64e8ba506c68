"""``bench sync``: export and import times of a feedback bundle at plant scale.

A source station gets N tiny generated PNGs and M revisions, spread evenly over the images
in rounds of (mask, review, mask, explanation, review): with the defaults, 10,000 images
and 50,000 revisions (20,000 masks, each a distinct array, 10,000 texts, 20,000 verdicts).
Building it is not timed. Then, timed:

1. ``export``: the whole product to one bundle (every image file, mask and revision);
2. ``import``: that bundle into an empty store (verify all, then one transaction);
3. ``reimport``: the same bundle again (everything is known: the idempotent no-op).

Target from issue 14: export and import <= 60 s each on 2 CPU cores. Each step reports
its wall time (``*_s``) and the CPU time of the process, all threads (``*_cpu_s``): on a
machine shared with other work the wall time also counts the waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

TARGETS = {"export_s": 60.0, "import_s": 60.0}
PRODUCT = "bench-sync"
KINDS = ("mask", "review", "mask", "explanation", "review")
_BATCH = 500
T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sync", help="feedback bundle export / import times")
    parser.add_argument("--images", type=int, default=10_000, help="images (10000)")
    parser.add_argument("--revisions", type=int, default=50_000, help="revisions (50000)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (32)")
    parser.add_argument("--workdir", help="scratch folder (default: a temp folder, removed)")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    parser.set_defaults(handler=run)


def _image(index: int, size: int) -> np.ndarray:
    """A small grey part with a coded corner: distinct, and a PNG of a few hundred bytes."""
    image = np.full((size, size), 128, np.uint8)
    image[size // 4 : size // 2, size // 4 :] = 90
    image[0, :4] = np.frombuffer(index.to_bytes(4, "little"), dtype=np.uint8)
    return image


def _mask(index: int, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[index % size, : 1 + index % (size - 1)] = 1
    mask[(index // size) % size, size - 1 - (index // (size * size)) % size] = 1
    mask[size - 1, index % 3] = 1
    return mask


def build_station(work: Path, images: int, revisions: int, size: int) -> Path:
    """The source store; returns its path."""
    import hashlib

    from workstation.core.imageio import encode_png
    from workstation.core.types import Explanation
    from workstation.store.repository import Store
    from workstation.store.rows import NewImage, NewMaskRevision

    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = work / "source" / "station.sqlite"
    with Store.open(path, fsync_blobs=False) as store:
        product = store.create_product(PRODUCT, description="generated for bench sync")
        entries = []
        for index in range(images):
            data = encode_png(_image(index, size), compression=1)
            file = folder / f"part_{index:05d}.png"
            file.write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            entries.append(NewImage(str(file), sha, size, size, "unlabeled", None))
        ids = [
            record.id
            for start in range(0, images, 5000)
            for record, _ in store.add_images(product.id, entries[start : start + 5000])
        ]
        masks: list[NewMaskRevision] = []
        last_mask: dict[int, int] = {}
        for number in range(revisions):
            image_id = ids[number % images]
            kind = KINDS[(number // images) % len(KINDS)]
            if kind == "mask":
                masks.append(
                    NewMaskRevision(
                        image_id,
                        _mask(number, size),
                        "inspector",
                        f"inspector-{number % 7}",
                        last_mask.get(image_id),
                        "adapter-1",
                    )
                )
                if len(masks) == _BATCH or number % images == images - 1:
                    for revision in store.add_mask_revisions(masks):
                        last_mask[revision.image_id] = revision.id
                    masks = []
            elif kind == "review":
                verdict = ("accepted", "normal", "anomalous", "skipped")[number % 4]
                store.add_review(image_id, verdict, reviewer=f"inspector-{number % 7}")
            else:
                text = Explanation("anomalous", "scratch", "top left", "medium", "a fine line")
                store.add_explanation(image_id, text, source="inspector", author="inspector-1")
        if masks:
            store.add_mask_revisions(masks)
    return path


def bench_sync(work: Path, images: int, revisions: int, size: int) -> dict[str, float]:
    from workstation.store.repository import Store
    from workstation.sync.feedback import export_feedback, import_feedback

    source = build_station(work, images, revisions, size)
    bundle = work / "feedback.zip"
    times: dict[str, float] = {}

    def timed(key: str, action: Callable[[], T]) -> T:
        wall, cpu = time.perf_counter(), time.process_time()
        result = action()
        times[f"{key}_s"] = time.perf_counter() - wall
        times[f"{key}_cpu_s"] = time.process_time() - cpu
        return result

    with Store.open(source) as store:
        exported = timed("export", lambda: export_feedback(store, PRODUCT, bundle))
    with Store.open(work / "target" / "station.sqlite") as store:
        merged = timed("import", lambda: import_feedback(store, bundle))
        again = timed("reimport", lambda: import_feedback(store, bundle))
    added = sum(merged.added.values())
    if merged.images_added != images or added != revisions or sum(again.added.values()):
        raise RuntimeError(f"benchmark import went wrong: {merged} then {again}")
    return {
        "images": exported.images,
        "revisions": exported.revisions,
        "masks": exported.masks,
        "bundle_mb": bundle.stat().st_size / 1e6,
        **times,
    }


def run(args: argparse.Namespace) -> int:
    if args.images < 1 or args.revisions < 0 or args.size < 8:
        from workstation.core.errors import UserError

        raise UserError("bench sync needs --images >= 1, --revisions >= 0 and --size >= 8")
    print(
        f"building a station with {args.images} images and {args.revisions} revisions ...",
        flush=True,
    )
    results: dict[str, object] = {"machine": platform.platform(), "cpus": os.cpu_count() or 0}
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
        results.update(bench_sync(work, args.images, args.revisions, args.size))
    else:
        with tempfile.TemporaryDirectory(prefix="iad-bench-sync-") as tmp:
            results.update(bench_sync(Path(tmp), args.images, args.revisions, args.size))
    for key, value in results.items():
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        target = TARGETS.get(key)
        verdict = ""
        if target is not None and isinstance(value, float):
            verdict = f"   (target <= {target:g}: {'met' if value <= target else 'MISSED'})"
        print(f"{key:<12} {shown}{verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0
