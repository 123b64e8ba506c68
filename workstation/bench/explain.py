"""``bench explain``: template explanations per second, VLM latency and tokens per second,
(``--check-locations``) whether the template's location word names the grid cell that
holds the largest part of each ground-truth mask, and (``--types DATASET``) how well the
learned defect types name defects after k corrections per type (``type_replay``).

The VLM part builds a tiny random Qwen2.5-VL in-process by default (``--vlm tiny``), which
measures the pipeline's overhead on this machine, not a real model's speed; pass a
catalogue name or a model folder to time a real one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from workstation.core import masks
from workstation.core.types import AnomalyMap


def synthetic_maps(count: int, size: int, *, seed: int = 0) -> list[AnomalyMap]:
    """Noise maps with one to three regions of mixed shapes (lines, blobs, large patches)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    maps = []
    for _ in range(count):
        values = (rng.random((size, size), dtype=np.float32) * 0.6).astype(np.float32)
        for _ in range(int(rng.integers(1, 4))):
            y, x = (int(v) for v in rng.integers(0, size, 2))
            kind = rng.integers(0, 3)
            strength = float(rng.uniform(1.05, 3.0))
            if kind == 0:  # scratch
                length = int(rng.integers(size // 8, size // 2))
                values[y : y + 3, x : x + length] = strength
            elif kind == 1:  # pit
                radius = int(rng.integers(2, max(3, size // 40)))
                values[(yy - y) ** 2 + (xx - x) ** 2 < radius**2] = strength
            else:  # stain
                radius = int(rng.integers(size // 10, size // 4))
                values[(yy - y) ** 2 + (xx - x) ** 2 < radius**2] = strength
        maps.append(AnomalyMap(values, score=float(values.max()), threshold=1.0))
    return maps


def bench_template(count: int, size: int) -> dict[str, Any]:
    from workstation.explain.template import explain

    maps = synthetic_maps(count, size)
    for amap in maps[:5]:
        explain(amap)  # warm-up (OpenCV and numpy first-call costs)
    started, cpu_started = time.perf_counter(), time.process_time()
    for amap in maps:
        explain(amap)
    seconds = time.perf_counter() - started
    cpu_seconds = max(time.process_time() - cpu_started, 1e-9)
    return {
        "maps": count,
        "size": size,
        "seconds": round(seconds, 3),
        "explanations_per_s": round(count / seconds, 1),
        # CPU time of this process: what the rate would be without other load on the cores
        "explanations_per_cpu_s": round(count / cpu_seconds, 1),
    }


def _stamper(marks: list[float]) -> Callable[[str], None]:
    """A token callback that records when each piece of text arrived."""
    return lambda _text: marks.append(time.perf_counter())


def bench_vlm(name: str, *, runs: int, max_new_tokens: int, device: str) -> dict[str, Any]:
    from workstation.explain.cache import ResultCache
    from workstation.explain.prompts import ExplainRequest, PromptOptions
    from workstation.explain.vlm import VlmExplainer

    with tempfile.TemporaryDirectory() as temp:
        folder = None
        small = name == "tiny"
        if small:
            from workstation.explain.tiny import build_tiny_vlm

            # the default explainer's architecture, at toy size
            folder = build_tiny_vlm(Path(temp) / "tiny", architecture="qwen2.5-vl")
        started = time.perf_counter()
        explainer = VlmExplainer.load(
            name,
            folder=folder,
            device=device,
            max_new_tokens=max_new_tokens,
            options=PromptOptions(image_side=56, crop_side=28) if small else PromptOptions(),
            cache=ResultCache(capacity=1),
        )
        load_seconds = time.perf_counter() - started
        rng = np.random.default_rng(0)
        maps = synthetic_maps(runs + 1, 256, seed=1)
        latencies, first_tokens, tokens, fallbacks = [], [], 0, 0
        for index, amap in enumerate(maps):
            image = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
            request = ExplainRequest(image=image, anomaly_map=amap)
            marks: list[float] = []
            begin = time.perf_counter()
            result = explainer.explain(request, on_token=_stamper(marks))
            elapsed = time.perf_counter() - begin
            if index == 0:
                continue  # warm-up
            latencies.append(elapsed)
            first_tokens.append((marks[0] - begin) if marks else elapsed)
            tokens += result.tokens
            fallbacks += int(result.fallback)
        total = sum(latencies)
    return {
        "model": name,
        "device": explainer.loaded.device,
        "load_s": round(load_seconds, 2),
        "runs": runs,
        "max_new_tokens": max_new_tokens,
        "latency_s_mean": round(total / max(runs, 1), 3),
        "first_text_s_mean": round(float(np.mean(first_tokens)), 3) if first_tokens else None,
        "tokens_per_s": round(tokens / total, 1) if total else None,
        "tokens_per_explanation": round(tokens / max(runs, 1), 1),
        "template_fallbacks": fallbacks,
    }


def _reference_cell(mask: np.ndarray) -> masks.Cell:
    """Largest-part cell computed independently: each pixel's centre picks its cell."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    rows = np.minimum((3 * (ys + 0.5) / h).astype(int), 2)
    cols = np.minimum((3 * (xs + 0.5) / w).astype(int), 2)
    flat = int(np.argmax(np.bincount(rows * 3 + cols, minlength=9)))
    return (flat // 3, flat % 3)


def mask_files(dataset: Path) -> list[Path]:
    """``*_mask.png`` (or any png) under ``ground_truth/`` of an MVTec folder, or the folder."""
    root = dataset / "ground_truth" if (dataset / "ground_truth").is_dir() else dataset
    return sorted(p for p in root.rglob("*.png") if p.is_file())


def check_locations(dataset: Path) -> dict[str, Any]:
    """Template location vs the cell holding the largest part of each ground-truth mask."""
    from workstation.core.errors import UserError
    from workstation.core.imageio import read_mask
    from workstation.explain.template import explain

    files = mask_files(dataset)
    if not files:
        raise UserError(f"no mask images (*.png) under {dataset}")
    agree, empty, centroid_agree = 0, 0, 0
    misses: list[dict[str, str]] = []
    for path in files:
        mask = read_mask(path)
        if not mask.any():
            empty += 1
            continue
        amap = AnomalyMap(mask.astype(np.float32), score=1.0, threshold=0.5)
        said = explain(amap).location
        expected = _reference_cell(mask)
        if masks.cell_from_words(said) == expected:
            agree += 1
        else:
            misses.append({"mask": path.name, "said": said, "expected": masks.grid_words(expected)})
        cx, cy = masks.centroid(mask) or (0.0, 0.0)
        h, w = mask.shape
        centroid_cell = (min(int(3 * cy / h), 2), min(int(3 * cx / w), 2))
        centroid_agree += int(centroid_cell == expected)
    checked = len(files) - empty
    return {
        "dataset": str(dataset),
        "masks": len(files),
        "empty_masks": empty,
        "checked": checked,
        "location_agrees": agree,
        "agreement": round(agree / checked, 4) if checked else None,
        "centroid_cell_would_agree": centroid_agree,
        "disagreements": misses[:20],
    }


def _handler(args: argparse.Namespace) -> int:
    from workstation.core.errors import UserError

    if args.maps < 0 or args.size < 8 or args.vlm_runs < 1 or args.max_new_tokens < 1:
        raise UserError("--maps must be >= 0, --size >= 8, --vlm-runs and --max-new-tokens >= 1")
    report: dict[str, Any] = {}
    if args.maps > 0:
        report["template"] = bench_template(args.maps, args.size)
        print(json.dumps({"template": report["template"]}), flush=True)
    if args.vlm != "none":
        report["vlm"] = bench_vlm(
            args.vlm, runs=args.vlm_runs, max_new_tokens=args.max_new_tokens, device=args.device
        )
        print(json.dumps({"vlm": report["vlm"]}), flush=True)
    if args.check_locations is not None:
        report["locations"] = check_locations(args.check_locations)
        print(json.dumps({"locations": report["locations"]}), flush=True)
    if args.types is not None:
        from workstation.bench.type_replay import run_types_bench

        report["types"] = run_types_bench(args, progress=lambda text: print(text, flush=True))
        print(json.dumps({"types": report["types"]}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="template explanations/s, VLM latency and tokens/s, location check on masks",
    )
    parser.add_argument("--maps", type=int, default=300, help="synthetic maps for the template")
    parser.add_argument("--size", type=int, default=512, help="map side in pixels")
    parser.add_argument(
        "--vlm",
        default="tiny",
        help="'tiny' (random tiny Qwen2.5-VL built here), a model name or folder, or 'none'",
    )
    parser.add_argument("--vlm-runs", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument(
        "--check-locations",
        type=Path,
        metavar="DATASET_DIR",
        help="MVTec category (or folder of masks): check location words against masks",
    )
    parser.add_argument("--json", help="also write the report to this file")
    from workstation.bench.type_replay import add_types_options

    add_types_options(parser)
    parser.set_defaults(handler=_handler)
