"""``bench active DATASET_DIR``: does the review order make the expert better faster?

Simulation on an MVTec-layout folder: the few-shot expert starts from ``k`` normal shots;
each round a simulated inspector (the ground truth) reviews ``B`` images picked by the
strategy; reviewed normals join the memory bank (and the calibration of the threshold),
reviewed defects leave the pool. After each round we report image AUROC on the images not
yet reviewed, and the area under that learning curve (AULC, mean AUROC over rounds 0..R).
Random order is averaged over several seeds so one lucky draw does not decide.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workstation.active.strategies import STRATEGIES, Candidates, review_order

CALIBRATION_QUANTILE = 0.95
"""Threshold = this quantile of the scores known normals had before joining the bank."""


@dataclass(frozen=True)
class Curve:
    strategy: str
    aurocs: tuple[float, ...]
    reviewed_defects: tuple[int, ...]
    """Defects among the reviewed images after each round (how fast defects surface)."""

    @property
    def aulc(self) -> float:
        values = np.asarray(self.aurocs)
        return float(np.trapezoid(values) / max(1, values.size - 1))


@dataclass
class Pool:
    """Patch features (standardised on the shots), labels and embeddings, computed once."""

    patches: list[np.ndarray]
    """Per image (h*w, C) float32 patch features."""
    anomalous: np.ndarray
    embeddings: np.ndarray
    shots: list[int]
    candidates: list[int]


def prepare_pool(
    dataset: Path, *, shots: int, image_size: int, seed: int, backbone: object
) -> Pool:
    from workstation.bench.mvtec import load_category
    from workstation.core.errors import UserError
    from workstation.core.imageio import read_image
    from workstation.experts.features import resize_rgb, working_shape

    category = load_category(dataset)
    if len(category.train) < shots + 1:
        raise UserError(
            f"{dataset} has {len(category.train)} normal training images; need > {shots}"
        )
    items = list(category.train) + list(category.test)
    shapes = []
    for item in items:
        shapes.append(read_image(item.path).shape[:2])
    multiple = int(getattr(backbone, "size_multiple", backbone.patch_stride))  # type: ignore[attr-defined]
    shape = working_shape(shapes, image_size=image_size, multiple=multiple)
    feats = np.concatenate(
        [
            backbone.features(  # type: ignore[attr-defined]
                [resize_rgb(read_image(item.path), shape) for item in items[start : start + 8]]
            )
            .float()
            .cpu()
            .numpy()
            for start in range(0, len(items), 8)
        ]
    )
    rng = np.random.default_rng(seed)
    shot_ids = sorted(int(i) for i in rng.choice(len(category.train), size=shots, replace=False))
    # Standardise channels on the shots, as the few-shot expert does for the filter bank.
    flat_shots = feats[shot_ids].transpose(0, 2, 3, 1).reshape(-1, feats.shape[1])
    mean = flat_shots.mean(0)
    std = flat_shots.std(0)
    scale = np.maximum(std, np.median(std) * 1e-2 + 1e-6)
    patches = [
        ((f.transpose(1, 2, 0).reshape(-1, f.shape[0]) - mean) / scale).astype(np.float32)
        for f in feats
    ]
    # Image embedding: mean and spread of each channel over the patch grid, standardised.
    emb = np.stack([np.concatenate([p.mean(0), p.std(0)]) for p in patches])
    emb = (emb - emb.mean(0)) / (emb.std(0) + 1e-6)
    candidates = [i for i in range(len(items)) if i not in set(shot_ids)]
    return Pool(
        patches=patches,
        anomalous=np.array([item.anomalous for item in items]),
        embeddings=emb,
        shots=shot_ids,
        candidates=candidates,
    )


class GrowingBank:
    """Patch-kNN (k = 1) scores of every pool image, updated as normals join the bank.

    Adding images to a nearest-neighbour bank can only lower each patch's distance, so
    the new distance is the minimum of the old one and the distance to the new patches:
    exactly what refitting the few-shot expert would give, at a fraction of the cost.
    """

    def __init__(self, pool: Pool) -> None:
        import torch

        self.pool = pool
        self._queries = torch.from_numpy(np.concatenate(pool.patches))
        self._sizes = [p.shape[0] for p in pool.patches]
        self._distances = torch.full((self._queries.shape[0],), float("inf"))

    def add(self, image_ids: Sequence[int]) -> None:
        import torch

        from workstation.experts.fewshot import nearest_distances

        if not image_ids:
            return
        bank = torch.from_numpy(np.concatenate([self.pool.patches[i] for i in image_ids]))
        for start in range(0, self._queries.shape[0], 65536):
            part = self._queries[start : start + 65536]
            fresh = nearest_distances(part, bank, knn=1)
            view = self._distances[start : start + 65536]
            torch.minimum(view, fresh, out=view)

    def scores(self, image_ids: Sequence[int], top_percent: float = 1.0) -> np.ndarray:
        from workstation.experts.fewshot import top_percent_mean

        per_image = np.split(self._distances.numpy(), np.cumsum(self._sizes)[:-1])
        return np.array([top_percent_mean(per_image[i], top_percent) for i in image_ids])


def leave_one_out(pool: Pool) -> list[float]:
    """Each shot scored against the other shots: the first threshold calibration."""
    import torch

    from workstation.experts.fewshot import nearest_distances, top_percent_mean

    out = []
    for i in pool.shots:
        others = np.concatenate([pool.patches[j] for j in pool.shots if j != i])
        dist = nearest_distances(torch.from_numpy(pool.patches[i]), torch.from_numpy(others), knn=1)
        out.append(top_percent_mean(dist.numpy(), 1.0))
    return out


def simulate(pool: Pool, strategy: str, *, budget: int, rounds: int, seed: int) -> Curve:
    from workstation.active.strategies import reliability
    from workstation.core.metrics import auroc

    bank = GrowingBank(pool)
    bank.add(pool.shots)
    calibration = leave_one_out(pool)
    reviewed: list[int] = []
    seen = list(pool.shots)
    unreviewed = list(pool.candidates)
    aurocs: list[float] = []
    defects: list[int] = []
    at_review: list[float] = []
    for round_index in range(rounds + 1):
        scores = bank.scores(unreviewed)
        aurocs.append(auroc(pool.anomalous[unreviewed], scores))
        defects.append(int(pool.anomalous[reviewed].sum()) if reviewed else 0)
        if round_index == rounds:
            break
        candidates = Candidates(
            scores=scores,
            threshold=float(np.quantile(calibration, CALIBRATION_QUANTILE)),
            embeddings=pool.embeddings[unreviewed],
            reviewed_embeddings=pool.embeddings[seen],
            trust=reliability(at_review, pool.anomalous[reviewed]),
        )
        order = review_order(strategy, candidates, budget=budget, seed=seed + round_index)
        picked = [unreviewed[i] for i in order[:budget]]
        at_review += [float(scores[i]) for i in order[:budget]]
        normals = []
        for position, index in zip(order[:budget], picked, strict=True):
            if not pool.anomalous[index]:
                normals.append(index)
                calibration.append(float(scores[position]))
        bank.add(normals)
        reviewed += picked
        seen += picked
        unreviewed = [i for i in unreviewed if i not in set(picked)]
    return Curve(strategy, tuple(aurocs), tuple(defects))


def run_benchmark(
    dataset: Path,
    *,
    strategies: Sequence[str],
    budget: int,
    rounds: int,
    shots: int,
    image_size: int,
    seed: int,
    random_repeats: int,
) -> dict[str, object]:
    from workstation.experts.base import build_backbone

    started = time.perf_counter()
    backbone = build_backbone("filterbank")
    pool = prepare_pool(dataset, shots=shots, image_size=image_size, seed=seed, backbone=backbone)
    results: dict[str, object] = {}
    for strategy in strategies:
        repeats = random_repeats if strategy == "random" else 1
        curves = [
            simulate(
                pool,
                strategy,
                budget=budget,
                rounds=rounds,
                seed=seed + 1000 * r,
            )
            for r in range(repeats)
        ]
        mean_aurocs = np.mean([c.aurocs for c in curves], 0)
        results[strategy] = {
            "auroc_per_round": [round(float(a), 4) for a in mean_aurocs],
            "aulc": round(float(np.mean([c.aulc for c in curves])), 4),
            "aulc_runs": [round(c.aulc, 4) for c in curves],
            "defects_reviewed_per_round": list(curves[0].reviewed_defects),
        }
        print(
            f"{strategy:12s} AULC {results[strategy]['aulc']:.4f}  AUROC by round "  # type: ignore[index]
            + " ".join(f"{a:.3f}" for a in mean_aurocs),
            flush=True,
        )
    return {
        "dataset": str(dataset),
        "settings": {
            "budget": budget,
            "rounds": rounds,
            "shots": shots,
            "image_size": image_size,
            "seed": seed,
            "random_repeats": random_repeats,
            "backbone": "filterbank",
            "candidates": len(pool.candidates),
            "defects": int(pool.anomalous[pool.candidates].sum()),
        },
        "strategies": results,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _handler(args: argparse.Namespace) -> int:
    report = run_benchmark(
        args.dataset,
        strategies=args.strategy or list(STRATEGIES),
        budget=args.budget,
        rounds=args.rounds,
        shots=args.shots,
        image_size=args.image_size,
        seed=args.seed,
        random_repeats=args.random_repeats,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "strategies"}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "active", help="simulate review strategies on an MVTec folder; AUROC learning curves"
    )
    parser.add_argument("dataset", type=Path, help="MVTec-layout category folder")
    parser.add_argument(
        "--strategy",
        action="append",
        choices=STRATEGIES,
        help="strategy to simulate (repeatable; default: all)",
    )
    parser.add_argument("--budget", type=int, default=8, help="images reviewed per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--shots", type=int, default=8, help="normal shots to start from")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the full report to this file")
    parser.set_defaults(handler=_handler)
