"""``bench expert``: few-shot expert speed and memory on generated parts.

1. fit (features + coreset + leave-one-out calibration inputs) on K shots;
2. predict images/s on N further images (after one warm-up batch);
3. peak RSS after each phase, and optionally after fitting a bank from many normals
   (``--bank-normals``, the memory target); peak GPU memory on CUDA.

Targets from the issue for the filter bank at 512 px on 2 CPU cores: predict >= 20
images/s, fit on 16 shots <= 2 s, bank from 200 normals < 1 GB RSS. DINOv2 / CLIP can be
timed without weights (``--random-init``: same architecture, random weights).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import numpy as np

from workstation.bench.threads import add_threads_argument, apply_threads

TARGETS = {"predict_images_per_s": 20.0, "fit_seconds": 2.0, "bank_peak_rss_mb": 1024.0}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("expert", help="few-shot expert: fit time, images/s, memory")
    parser.add_argument("--backbone", default="filterbank")
    parser.add_argument("--size", type=int, default=512, help="image side and working size")
    parser.add_argument("--shots", type=int, default=16, help="normal shots to fit (16)")
    parser.add_argument("--images", type=int, default=40, help="images to predict (40)")
    parser.add_argument(
        "--bank-normals",
        type=int,
        default=200,
        help="normals for the memory measurement (200; 0 skips it)",
    )
    parser.add_argument("--memory-budget", type=int, default=20000)
    add_threads_argument(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--random-init",
        action="store_true",
        help="DINOv2/CLIP with random weights (timing only, no download)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    parser.set_defaults(handler=run)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _images(count: int, size: int, seed: int) -> list[np.ndarray]:
    from workstation.demo.generator import DemoSpec, render

    rng = np.random.default_rng(seed)
    spec = DemoSpec(size=size)
    return [render(rng, spec, None)[0] for _ in range(count)]


def _expert(args: argparse.Namespace, device: str) -> object:
    from workstation.experts.base import build_backbone
    from workstation.experts.fewshot import FewShotConfig, FewShotExpert

    options = {"random_init": True} if args.random_init and args.backbone != "filterbank" else {}
    backbone = build_backbone(args.backbone, device=device, **options)
    config = FewShotConfig(image_size=args.size, memory_budget=args.memory_budget)
    return FewShotExpert(backbone, config)


def run(args: argparse.Namespace) -> int:
    import torch

    from workstation.device import resolve_device

    threads = apply_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    shots = _images(args.shots, args.size, seed=1)
    queries = _images(args.images, args.size, seed=2)
    expert = _expert(args, device)

    started = time.perf_counter()
    expert.fit(shots)  # type: ignore[attr-defined]
    fit_seconds = time.perf_counter() - started
    expert.predict(queries[:2])  # type: ignore[attr-defined]  # warm-up
    started = time.perf_counter()
    expert.predict(queries)  # type: ignore[attr-defined]
    predict_seconds = time.perf_counter() - started
    results: dict[str, object] = {
        "backbone": args.backbone,
        "size": args.size,
        "shots": args.shots,
        "device": device,
        "threads": threads,
        "cpu": platform.processor() or platform.machine(),
        "fit_seconds": round(fit_seconds, 3),
        "predict_images_per_s": round(len(queries) / predict_seconds, 2),
        "bank_rows": int(expert.bank.shape[0]),  # type: ignore[attr-defined]
        "peak_rss_mb_after_predict": round(_peak_rss_mb(), 1),
    }
    if args.bank_normals:
        del shots, queries
        big = _expert(args, device)
        normals = _images(args.bank_normals, args.size, seed=3)
        started = time.perf_counter()
        big.fit(normals)  # type: ignore[attr-defined]
        results["bank_normals"] = args.bank_normals
        results["bank_fit_seconds"] = round(time.perf_counter() - started, 2)
        results["bank_peak_rss_mb"] = round(_peak_rss_mb(), 1)
    if cuda:
        results["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    results["targets"] = TARGETS if args.backbone == "filterbank" else {}
    for key, value in results.items():
        print(f"{key:28s} {value}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0
