"""``iad-workstation bench large``: a very large scan scored in tiles, timed, with its memory.

Writes a synthetic ``--side`` x ``--side`` scan (20000 by default, 1.2 GB of pixels),
band by band so that writing it costs one band: a woven texture with slow shading and
three planted dark spots of ``--defect`` px radius, each far below one pixel once the scan
is shrunk whole to the experts' working size. A product is fitted on ``--shots`` normal
crops of ``--shot`` px cut from the same texture at random places (as an engineer cuts
them from a real scan), the pyramid is built (``core.raster``, a child process) and the
scan is scored in tiles through ``services.large_scoring``, as ``inspect`` scores it.

Reported: tiles, seconds per tile, pyramid build seconds, fit seconds, defects found (a
region box overlapping a planted spot) and other regions, the stitched map's size, and
peak resident memory of this process and, apart, of its children (the pyramid's child
decodes the whole scan: that is where the 1.2 GB goes, never into the app).
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workstation.bench.scratch import emit, in_scratch
from workstation.bench.threads import add_threads_argument, apply_threads

if TYPE_CHECKING:
    from workstation.core.types import ImageRecord
    from workstation.store.repository import Store

BAND_ROWS = 128
DEFECTS = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("large", help="a very large scan scored in tiles")
    parser.add_argument("--side", type=int, default=20000, help="scan side in px (20000)")
    parser.add_argument("--shot", type=int, default=1024, help="normal crop side in px (1024)")
    parser.add_argument("--shots", type=int, default=16, help="normal crops to fit on (16)")
    parser.add_argument("--image-size", type=int, default=256, help="experts' working size")
    parser.add_argument("--defect", type=int, default=16, help="planted spot radius (16 px)")
    parser.add_argument("--seed", type=int, default=0)
    add_threads_argument(parser)
    parser.add_argument("--workdir", help="scratch folder (default: a temp folder, removed)")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    parser.set_defaults(handler=run)


def texture(x0: int, y0: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """The scan's pixels in [x0, x0 + width) x [y0, y0 + height): the same pattern wherever
    it is cut (a function of the position), with fresh fine noise."""
    x = np.arange(x0, x0 + width, dtype=np.float32)[None, :]
    y = np.arange(y0, y0 + height, dtype=np.float32)[:, None]
    gray = (
        140
        + 30 * np.sin(x / 2.5)
        + 14 * np.sin((x + y) / 6.0)
        + 12 * np.sin(y / 700.0) * np.cos(x / 900.0)
    )
    noise = rng.normal(0, 8, (height, width, 1)).astype(np.float32)
    tint = np.array([8, 0, -8], np.float32)[None, None, :]
    return np.clip(gray[:, :, None] + tint + noise, 0, 255).astype(np.uint8)


def spots(side: int, seed: int) -> list[tuple[int, int]]:
    """Centres of the planted spots, away from the border (seeded: every run the same)."""
    rng = np.random.default_rng(seed + 1)
    low, high = int(side * 0.15), int(side * 0.85)
    return [(int(x), int(y)) for x, y in rng.integers(low, high, (DEFECTS, 2))]


def scan_bands(
    side: int, centres: list[tuple[int, int]], radius: int, seed: int
) -> Iterator[np.ndarray]:
    """The scan, top to bottom, in bands of ``BAND_ROWS`` rows with the spots drawn in."""
    import cv2

    rng = np.random.default_rng(seed)
    for y0 in range(0, side, BAND_ROWS):
        band = texture(0, y0, side, min(BAND_ROWS, side - y0), rng)
        for cx, cy in centres:
            if y0 - radius <= cy < y0 + band.shape[0] + radius:
                cv2.circle(band, (cx, cy - y0), radius, (90, 80, 90), -1)
        yield band


@dataclass(frozen=True)
class Found:
    """The regions of the scored scan against the planted spots."""

    spots: int
    """Spots a region box overlaps."""
    other: int
    """Regions that overlap no spot (false alarms at the product's threshold)."""
    spot_peak_min: float
    """The weakest found spot's peak (0 when none was found)."""
    other_peak_max: float
    """The strongest false alarm's peak (0 when there is none): below ``spot_peak_min``,
    a threshold between them finds every spot and nothing else."""


def found_spots(regions: tuple[Any, ...], centres: list[tuple[int, int]], radius: int) -> Found:
    def overlaps(box: tuple[int, int, int, int], centre: tuple[int, int]) -> bool:
        x0, y0, x1, y1 = box
        cx, cy = centre
        return x0 - radius <= cx < x1 + radius and y0 - radius <= cy < y1 + radius

    hits = [
        max((r.peak or 0.0 for r in regions if overlaps(r.bbox, c)), default=None) for c in centres
    ]
    others = [r.peak or 0.0 for r in regions if not any(overlaps(r.bbox, c) for c in centres)]
    found = [peak for peak in hits if peak is not None]
    return Found(
        spots=len(found),
        other=len(others),
        spot_peak_min=round(min(found, default=0.0), 3),
        other_peak_max=round(max(others, default=0.0), 3),
    )


def _peak_mb(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # kB on Linux


def measure(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    from workstation.config import ExpertSettings
    from workstation.core.errors import UserError
    from workstation.core.imageio import write_png, write_png_bands
    from workstation.core.raster import ensure_raster, tiles_folder
    from workstation.core.untrusted import limits, set_limits, with_limits
    from workstation.services.inspect import load_active_pipeline
    from workstation.services.large_scoring import score_stored_tiled, shot_shape
    from workstation.store.repository import Store

    if args.side < args.shot or args.shot < 32 or args.shots < 1:
        raise UserError("need --side >= --shot >= 32 and --shots >= 1")
    threads = apply_threads(args.threads)
    # A plant with such scans raises [limits] max_image_megapixels (100 by default) to
    # fit them; the bench does the same for this run.
    pixels = max(limits().image_pixels, args.side * args.side)
    set_limits(with_limits(image_pixels=pixels))
    centres = spots(args.side, args.seed)
    started = time.perf_counter()
    scan = folder / "scan.png"
    print(f"writing a {args.side}x{args.side} scan ...", flush=True)
    write_png_bands(
        scan, args.side, args.side, scan_bands(args.side, centres, args.defect, args.seed)
    )
    write_s = time.perf_counter() - started
    rng = np.random.default_rng(args.seed + 2)
    store = Store.open(folder / "bench.sqlite")
    try:
        product = store.create_product("scan")
        for index in range(args.shots):
            x0, y0 = (int(v) for v in rng.integers(0, args.side - args.shot + 1, 2))
            path = folder / f"normal_{index:03d}.png"
            write_png(path, texture(x0, y0, args.shot, args.shot, rng))
            _add(store, product.id, path, args.shot, "train")
        record = _add(store, product.id, scan, args.side, "unlabeled")
        # The pyramid first: its child is forked before torch is loaded here, so the
        # children's peak is the decode's, not a copy of this process.
        print("building the pyramid ...", flush=True)
        started = time.perf_counter()
        ensure_raster(scan, tiles_folder(store.path, record.sha256))
        pyramid_s = time.perf_counter() - started
        started = time.perf_counter()
        _, pipeline = load_active_pipeline(
            store, product, ExpertSettings(image_size=args.image_size)
        )
        fit_s = time.perf_counter() - started
        print(f"fitted on {args.shots} shots in {fit_s:.1f} s; scoring ...", flush=True)
        product = store.get_product(product.id)
        started = time.perf_counter()
        scored = score_stored_tiled(
            store,
            record,
            pipeline,
            product,
            shot=shot_shape(store, product),
            progress=_every_tenth,
        )
        score_s = time.perf_counter() - started
    finally:
        store.close()
    found = found_spots(scored.regions, centres, args.defect)
    return {
        "side": args.side,
        "shot": args.shot,
        "image_size": args.image_size,
        "shots": args.shots,
        "threads": threads,
        "max_image_megapixels": pixels / 1e6,
        "scan_mb": round(scan.stat().st_size / 2**20, 1),
        "write_s": round(write_s, 2),
        "fit_s": round(fit_s, 2),
        "pyramid_s": round(pyramid_s, 2),
        "tiles": scored.tiles,
        "score_s": round(score_s, 2),
        "s_per_tile": round(score_s / max(scored.tiles, 1), 4),
        "score": round(scored.fused.score, 3),
        "defects": DEFECTS,
        "defects_found": found.spots,
        "other_regions": found.other,
        "defect_peak_min": found.spot_peak_min,
        "other_peak_max": found.other_peak_max,
        "map_shape": list(scored.fused.map.shape),
        "peak_rss_mb_self": _peak_mb(resource.RUSAGE_SELF),
        "peak_rss_mb_children": _peak_mb(resource.RUSAGE_CHILDREN),
    }


def _add(store: Store, product_id: int, path: Path, side: int, split: str) -> ImageRecord:
    """A square image into the store: a normal shot (``train``) or the scan."""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    record, _ = store.add_image(
        product_id,
        path=path,
        sha256=digest,
        width=side,
        height=side,
        split=split,
        source_label="good" if split == "train" else None,  # type: ignore[arg-type]
    )
    return record


def _every_tenth(done: int, total: int) -> None:
    if total and (done == total or done % max(1, total // 10) == 0):
        print(f"  tile {done}/{total}", flush=True)


def run(args: argparse.Namespace) -> int:
    numbers = in_scratch(args.workdir, "iad-bench-large-", lambda folder: measure(folder, args))
    lines = [
        f"scan {numbers['side']} px ({numbers['scan_mb']} MB PNG, written in "
        f"{numbers['write_s']} s); shots {numbers['shot']} px x {numbers['shots']}, "
        f"experts at {numbers['image_size']} px, {numbers['threads']} torch thread(s)",
        f"fit {numbers['fit_s']} s · pyramid {numbers['pyramid_s']} s · "
        f"{numbers['tiles']} tiles in {numbers['score_s']} s ({numbers['s_per_tile']} s/tile)",
        f"defects found {numbers['defects_found']}/{numbers['defects']} "
        f"(weakest peak {numbers['defect_peak_min']}; {numbers['other_regions']} other "
        f"regions, strongest {numbers['other_peak_max']}), score {numbers['score']}, "
        f"map {numbers['map_shape'][1]}x{numbers['map_shape'][0]}",
        f"peak RSS {numbers['peak_rss_mb_self']} MB (this process), "
        f"{numbers['peak_rss_mb_children']} MB (children)",
    ]
    return emit(lines, numbers, args.json)
