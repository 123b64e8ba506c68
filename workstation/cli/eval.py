"""``iad-workstation eval DATASET_DIR``: few-/zero-shot metrics on an MVTec-layout folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate the experts on an MVTec-layout dataset",
        description="Per category: sample K train/good shots with the seed, fit and "
        "calibrate the experts, score every test image, report image AUROC, pixel AUROC, "
        "AUPRO (FPR <= 0.3), image F1-max and images/s.",
    )
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR",
                        help="one category folder or a folder of categories")
    parser.add_argument(
        "--expert",
        choices=("fewshot", "zeroshot", "selftaught", "fused", "fewshot+zeroshot", "pool"),
        default="fewshot",
        help="fused = few-shot + a self-taught network trained on the same shots; pool = "
        "few-shot whose scores the unlabelled test images (the station's pool) can lower",
    )
    parser.add_argument("--backbone", default=None,
                        help="auto (choose per category on evidence made from the shots; "
                        "the default of --expert fused), filterbank (weight-free, the default "
                        "otherwise), efficientnet-lite0/1/2, mobilenet-v2, vgg16-hed (pip), "
                        "dinov2-small, dinov2-base, clip-b16-plus")
    parser.add_argument("--fixed-fusion", action="store_true",
                        help="no fusion choice: every expert joins with weight 1 (the old "
                        "fixed fusion, for comparison)")
    parser.add_argument("--labelled", type=int, default=0, metavar="K",
                        help="hand K anomalous test images (seeded) to the fit as confirmed "
                        "defects and leave them out of the scores")
    parser.add_argument("--clip-model", default="clip-b16-plus",
                        help="CLIP model of the zero-shot expert")
    parser.add_argument("--shots", type=_shots, default=8,
                        help="normal shots per category, or 'all' (every train/good image)")
    parser.add_argument("--budget-minutes", type=float, default=8.0,
                        help="training time of the self-taught network (selftaught, fused)")
    parser.add_argument("--steps", type=int, metavar="N",
                        help="training steps of the self-taught network (default 4000; "
                        "training ends at the steps or the budget, whichever comes first)")
    parser.add_argument("--encoder", default="scratch",
                        help="initial weights of the self-taught network's encoder: scratch "
                        "(random), efficientnet-lite0/1/2 or mobilenet-v2 (ImageNet, pip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=512,
                        help="working resolution (side of a square of equal area)")
    parser.add_argument("--position-aware", action="store_true",
                        help="match patches only near the same position (fixed-pose parts)")
    parser.add_argument("--drop-family", action="append", default=[], metavar="FAMILY",
                        help="leave a synthetic defect family out of the self-taught training "
                        "(ablation; repeatable)")
    parser.add_argument("--align", choices=("off", "rigid", "similarity"), default="off",
                        help="register every image to a reference normal first")
    parser.add_argument("--augment", action="store_true",
                        help="add flipped / rotated copies of the shots to the memory bank")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the report here")
    parser.set_defaults(handler=run)


def _shots(text: str) -> int:
    """``all`` or a positive count; 0 stands for all inside the evaluation."""
    if text.strip().lower() == "all":
        return 0
    try:
        value = int(text)
    except ValueError:
        message = f"expected a number of shots or 'all', got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if value < 1:
        raise argparse.ArgumentTypeError("--shots must be at least 1 (or 'all')")
    return value


def _table(report: dict[str, object]) -> str:
    def fmt(value: object) -> str:
        return "   -  " if value is None else f"{float(value):6.3f}"  # type: ignore[arg-type]

    lines = [f"{'category':24s} image  pixel  aupro  f1max   n  img/s"]
    rows = dict(report["categories"])  # type: ignore[call-overload]
    rows["mean"] = report["mean"]
    for name, row in rows.items():
        lines.append(
            f"{name:24s}{fmt(row['image_auroc'])} {fmt(row['pixel_auroc'])} "
            f"{fmt(row['aupro'])} {fmt(row['f1_max'])} {row.get('n_test', ''):>4} "
            f"{row['images_per_second'] or 0:6.1f}"
        )
    for name, row in dict(report["categories"]).items():  # type: ignore[call-overload]
        if row.get("fusion"):
            lines.append(f"{name}: {row['fusion']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from workstation.cli.progress import progress_bar
    from workstation.device import resolve_device
    from workstation.evaluation.runner import EvalConfig, evaluate

    config = EvalConfig(
        expert=args.expert,
        backbone=args.backbone or ("auto" if args.expert == "fused" else "filterbank"),
        select=not args.fixed_fusion,
        labelled=args.labelled,
        shots=args.shots,
        seed=args.seed,
        image_size=args.image_size,
        clip_model=args.clip_model,
        device=resolve_device(args.device),
        position_aware=args.position_aware,
        augment=args.augment,
        budget_minutes=args.budget_minutes,
        align=args.align,
        drop_families=tuple(args.drop_family),
        encoder=args.encoder,
        steps=args.steps,
    )
    report = evaluate(args.dataset, config, progress_factory=lambda total, label: progress_bar(
        total, label
    ))
    print(_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"report written to {args.json}", file=sys.stderr)
    return 0
