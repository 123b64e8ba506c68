"""``bench active DATASET_DIR``: does the review order find defects sooner and make the
experts better faster?

Every strategy runs the simulated review loop of :mod:`workstation.bench.review_loop` on
``--seeds`` seeds (each seed: other shots, another evaluation half, another random order),
``--rounds`` rounds of ``--budget`` reviews, with adapter rounds trained in the loop.
Reported per strategy: the mean (and standard deviation over seeds) of

- the area under the recall curve: defects found among the reviewed images, as a share of
  all defects in the review pool, averaged over rounds 0..R (what the inspector sees);
- the areas under the image and pixel AUROC curves of the fused experts on the
  evaluation half (what the models learnt);

and, for each, the paired difference to random order on the same seeds (mean and standard
deviation), which removes most of the seed-to-seed variation the strategies share.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workstation.active.strategies import STRATEGIES
from workstation.bench.threads import add_threads_argument, apply_threads

if TYPE_CHECKING:
    from workstation.bench.review_loop import Run

CURVES = ("recall", "image_auroc", "pixel_auroc")
SIMULATED_ADAPTER_STEPS = 100
"""A third of a product round's steps: every strategy and seed trains an adapter each
round (210 rounds for the default run), and training is most of the cost. The default
run took 42 min on the demo on busy cores, and 8 min on bsdata on quiet ones with the
seeds split over two processes (``--seed``/``--seeds``; docs/benchmarks.md)."""
BASELINE = "random"


def _stats(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(array.mean()), 4), "std": round(float(array.std()), 4)}


def recall_area_bound(budget: int, rounds: int, pool_defects: int) -> float:
    """The largest recall area ``rounds`` rounds of ``budget`` reviews can reach: the scale
    against which a strategy's recall area (and its gain over random) should be read."""
    recall = np.minimum(1.0, np.arange(rounds + 1) * budget / max(1, pool_defects))
    return float(np.trapezoid(recall) / rounds)


def picks_by_reason(runs: Sequence[Run]) -> dict[str, dict[str, int]]:
    """How many reviews each reason brought, over all seeds, and how many were defects."""
    out: dict[str, dict[str, int]] = {}
    for run in runs:
        for reasons, found in zip(run.reasons, run.found, strict=True):
            for reason, defect in zip(reasons, found, strict=True):
                entry = out.setdefault(reason, {"reviews": 0, "defects": 0})
                entry["reviews"] += 1
                entry["defects"] += int(defect)
    return out


def summarise(runs: dict[str, list[Run]]) -> dict[str, Any]:
    """Per strategy: mean curves, areas (mean, std over seeds) and paired gains on random."""
    baseline = runs.get(BASELINE)
    out: dict[str, Any] = {}
    for strategy, per_seed in runs.items():
        entry: dict[str, Any] = {"seeds": [r.seed for r in per_seed]}
        for curve in CURVES:
            rounds = min(len(getattr(r, curve)) for r in per_seed)
            mean_curve = np.mean([getattr(r, curve)[:rounds] for r in per_seed], axis=0)
            areas = [r.area(curve) for r in per_seed]
            entry[curve] = {
                "per_round": [round(float(v), 4) for v in mean_curve],
                "area": _stats(areas),
                "area_per_seed": [round(a, 4) for a in areas],
            }
            if baseline is not None and strategy != BASELINE:
                gains = [a - b.area(curve) for a, b in zip(areas, baseline, strict=True)]
                entry[curve]["gain_over_random"] = _stats(gains)
        entry["reviews_per_round"] = per_seed[0].reviews
        entry["picks_by_reason"] = picks_by_reason(per_seed)
        out[strategy] = entry
    return out


def table(summary: dict[str, Any]) -> str:
    """Markdown table: area under each curve, mean ± std, and the paired gain over random."""
    lines = [
        "| strategy | recall area | gain | image AUROC area | gain | pixel AUROC area | gain |",
        "|---|---|---|---|---|---|---|",
    ]
    for strategy, entry in summary.items():
        cells = [strategy]
        for curve in CURVES:
            area = entry[curve]["area"]
            cells.append(f"{area['mean']:.3f} ± {area['std']:.3f}")
            gain = entry[curve].get("gain_over_random")
            cells.append("" if gain is None else f"{gain['mean']:+.3f} ± {gain['std']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_benchmark(
    dataset: Path,
    *,
    strategies: Sequence[str],
    budget: int,
    rounds: int,
    shots: int,
    image_size: int,
    seeds: Sequence[int],
    adapter_steps: int,
) -> dict[str, Any]:
    from training.kinds.adapter import AdapterHyperparameters
    from workstation.bench.review_loop import prepare, seed_state, simulate, split_for_seed
    from workstation.core.errors import UserError

    if budget < 1 or rounds < 1 or shots < 2 or not seeds or adapter_steps < 1:
        raise UserError(
            "--budget, --rounds and --adapter-steps must be >= 1, --shots >= 2, --seeds >= 1"
        )
    hyper = AdapterHyperparameters(steps=adapter_steps)
    started = time.perf_counter()
    prepared = prepare(dataset, image_size=image_size, hyper=hyper)
    print(
        f"features of {len(prepared)} images in {time.perf_counter() - started:.0f} s", flush=True
    )
    runs: dict[str, list[Run]] = {s: [] for s in strategies}
    split = None
    for seed in seeds:
        split = split_for_seed(prepared, shots=shots, seed=seed)
        state = seed_state(prepared, split)
        for strategy in strategies:
            run = simulate(
                prepared, state, strategy, budget=budget, rounds=rounds, hyper=hyper, seed=seed
            )
            runs[strategy].append(run)
            print(
                f"seed {seed} {strategy:14s} recall {run.area('recall'):.3f}  image AUROC "
                f"{run.area('image_auroc'):.3f}  pixel AUROC {run.area('pixel_auroc'):.3f}  "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    assert split is not None
    anomalous = prepared.anomalous
    summary = summarise(runs)
    return {
        "dataset": str(dataset),
        "settings": {
            "budget": budget,
            "rounds": rounds,
            "shots": shots,
            "image_size": image_size,
            "adapter_shape": list(prepared.adapter_shape),
            "adapter_steps": hyper.steps,
            "seeds": list(seeds),
            "backbone": prepared.backbone.name,
            "pool": len(split.pool),
            "pool_defects": int(anomalous[split.pool].sum()),
            "recall_area_if_every_review_found_a_defect": round(
                recall_area_bound(budget, rounds, int(anomalous[split.pool].sum())), 4
            ),
            "evaluation": len(split.evaluation),
            "evaluation_defects": int(anomalous[split.evaluation].sum()),
        },
        "strategies": summary,
        "table": table(summary),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _handler(args: argparse.Namespace) -> int:
    threads = apply_threads(args.threads)
    report = run_benchmark(
        args.dataset,
        strategies=args.strategy or list(STRATEGIES),
        budget=args.budget,
        rounds=args.rounds,
        shots=args.shots,
        image_size=args.image_size,
        seeds=[args.seed + i for i in range(args.seeds)],
        adapter_steps=args.adapter_steps,
    )
    report["settings"]["threads"] = threads
    print(report["table"])
    print(json.dumps({k: v for k, v in report.items() if k not in ("strategies", "table")}))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "active",
        help="simulate review strategies on an MVTec folder: recall and AUROC per round",
    )
    parser.add_argument("dataset", type=Path, help="MVTec-layout category folder")
    parser.add_argument(
        "--strategy",
        action="append",
        choices=STRATEGIES,
        help="strategy to simulate (repeatable; default: all)",
    )
    parser.add_argument("--budget", type=int, default=5, help="images reviewed per round (5)")
    parser.add_argument("--rounds", type=int, default=6, help="review rounds (6)")
    parser.add_argument("--shots", type=int, default=8, help="normal shots to start from (8)")
    parser.add_argument("--image-size", type=int, default=256, help="few-shot working size (256)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per strategy (5)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (0)")
    parser.add_argument(
        "--adapter-steps",
        type=int,
        default=SIMULATED_ADAPTER_STEPS,
        help=f"optimiser steps of each simulated adapter round ({SIMULATED_ADAPTER_STEPS}; "
        "a product round takes 300)",
    )
    add_threads_argument(parser)
    parser.add_argument("--json", help="also write the full report to this file")
    parser.set_defaults(handler=_handler)
