"""``bench training``: how long rounds take, and whether corrected masks help (learning curve).

Timing (default): an adapter round on 100 defect masks (+ normals) at 512 px with the
filter-bank backbone, a self-taught round on 45 normals (generated plates, or the
``train/good`` images of ``--normals-from DIR``) at the experts' default size, and a
tiny-VLM LoRA round, each run exactly as the app runs it (``python -m training`` child
process, manifest in, JSON lines out). ``--kinds`` picks which.

Curve (``--curve DATASET_DIR``): from ``--shots`` normal shots, the defect images are split
into a feedback part and an evaluation part (never trained on); adapter rounds are fed
the first 20, then 40 corrected masks of the feedback part, together with the remaining
normal training images. Image and pixel AUROC on the evaluation part (its defects plus
test/good) are reported for the zero-feedback few-shot expert and for the few-shot map
joined with each adapter.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workstation.config import ExpertSettings

if TYPE_CHECKING:
    from training.kinds.adapter import AdapterHyperparameters


def _child(manifest_path: Path, out: Path, device: str) -> tuple[float, list[dict[str, object]]]:
    from training.contract import parse_event
    from workstation.services.rounds import child_command, child_env

    started = time.perf_counter()
    result = subprocess.run(
        child_command(manifest_path, out, device),
        capture_output=True,
        text=True,
        env=child_env(),
        check=False,
    )
    events = [e for e in map(parse_event, result.stdout.splitlines()) if e is not None]
    if result.returncode != 0:
        raise RuntimeError(
            f"round failed: {events[-1].message if events else result.stderr[-500:]}"
        )
    return time.perf_counter() - started, [e.__dict__ for e in events]


def time_adapter_round(
    work: Path, *, masks: int, size: int, steps: int | None, device: str
) -> dict[str, object]:
    from training.contract import RoundManifest, Sample
    from workstation.demo.generator import DEFECT_TYPES, DemoSpec, generate

    per_defect = -(-masks // len(DEFECT_TYPES))
    summary = generate(
        work / "data", DemoSpec(size=size, train_good=48, test_good=20, per_defect=per_defect)
    )
    root = summary.root
    defects = sorted(p for d in DEFECT_TYPES for p in (root / "test" / d).glob("*.png"))[:masks]
    normals = sorted((root / "train" / "good").glob("*.png"))
    mask_dir = work / "masks"
    mask_dir.mkdir(parents=True, exist_ok=True)
    from workstation.core.imageio import read_mask

    train = []
    for path in defects:
        mask_path = mask_dir / f"{path.parent.name}-{path.stem}.npy"
        np.save(
            mask_path, read_mask(root / "ground_truth" / path.parent.name / f"{path.stem}_mask.png")
        )
        train.append(Sample(str(path), "anomalous", mask_path=str(mask_path)))
    train += [Sample(str(p), "normal") for p in normals[8:]]
    held = [Sample(str(p), "normal") for p in sorted((root / "test" / "good").glob("*.png"))]
    manifest = RoundManifest(
        product="bench",
        kind="adapter",
        backbone="filterbank",
        base_model="",
        train=tuple(train),
        held_out=tuple(held),
        references=tuple(str(p) for p in normals[:8]),
        image_size=size,
        hyperparameters={} if steps is None else {"steps": steps},
    )
    path = manifest.save(work / "manifest.json")
    seconds, events = _child(path, work / "model", device)
    return {
        "masks": len(defects),
        "normals": len(train) - len(defects),
        "size": size,
        "seconds": round(seconds, 1),
        "steps": events[-2].get("total") if len(events) > 1 else None,
    }


def time_selftaught_round(
    work: Path,
    *,
    normals_from: Path | None,
    normals: int,
    image_size: int,
    budget_minutes: float,
    device: str,
) -> dict[str, object]:
    """One self-taught round as the app runs it: 45 normals to learn from, up to 20 held
    out for the gate (a dataset's test/good, or more generated plates)."""
    from training.contract import RoundManifest, Sample
    from workstation.datasets.mvtec import load_category
    from workstation.demo.generator import DemoSpec, generate

    if normals_from is None:
        spec = DemoSpec(size=image_size, train_good=normals, test_good=20, per_defect=0)
        root = generate(work / "data", spec).root
    else:
        root = Path(normals_from)
    category = load_category(root)
    train = [Sample(str(item.path), "normal") for item in category.train[:normals]]
    held = [Sample(str(t.path), "normal") for t in category.test if not t.anomalous][:20]
    manifest = RoundManifest(
        product="bench",
        kind="selftaught",
        backbone="filterbank",
        base_model="",
        train=tuple(train),
        held_out=tuple(held),
        references=tuple(s.image_path for s in train),
        image_size=image_size,
        hyperparameters={"budget_minutes": budget_minutes},
    )
    path = manifest.save(work / "manifest.json")
    seconds, _ = _child(path, work / "model", device)
    metrics = json.loads((work / "model" / "metrics.json").read_text(encoding="utf-8"))
    return {
        "normals": len(train),
        "held_out_normals": len(held),
        "image_size": image_size,
        "seconds": round(seconds, 1),
        "training": metrics.get("training"),
        "before": metrics.get("before"),
        "after": metrics.get("after"),
        "promote": metrics.get("promote"),
        "data": str(root) if normals_from is not None else "generated plates",
    }


def time_vlm_round(work: Path, *, steps: int, device: str) -> dict[str, object]:
    from training.contract import RoundManifest, Sample
    from workstation.core.imageio import write_png
    from workstation.explain.tiny import build_tiny_vlm

    model = build_tiny_vlm(work / "tiny-vlm")
    rng = np.random.default_rng(0)
    samples = []
    for i in range(8):
        path = work / "img" / f"{i}.png"
        write_png(path, rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        verdict = "anomalous" if i % 2 else "normal"
        samples.append(
            Sample(
                str(path),
                verdict,
                explanation={
                    "verdict": verdict,
                    "defect_type": "scratch" if i % 2 else "",
                    "location": "center" if i % 2 else "",
                    "severity": "low",
                    "description": "x",
                },
            )
        )
    manifest = RoundManifest(
        product="bench",
        kind="vlm",
        backbone="filterbank",
        base_model=str(model),
        train=tuple(samples[:6]),
        held_out=tuple(samples[6:]),
        hyperparameters={"steps": steps, "model": str(model)},
    )
    path = manifest.save(work / "manifest.json")
    seconds, _ = _child(path, work / "model", device)
    return {"steps": steps, "seconds": round(seconds, 1)}


def learning_curve(
    dataset: Path,
    *,
    shots: int,
    feedback: tuple[int, ...],
    image_size: int,
    seed: int,
    hyper: AdapterHyperparameters,
) -> dict[str, object]:
    from training.adapter_round import fit_adapter
    from training.contract import Sample
    from training.data import MaskExample
    from workstation.core.imageio import read_image, read_mask
    from workstation.core.metrics import auroc, pixel_auroc
    from workstation.datasets.mvtec import load_category
    from workstation.experts.adapter import JoinScales, join_adapter
    from workstation.experts.base import build_backbone
    from workstation.experts.fewshot import FewShotConfig, FewShotExpert

    started = time.perf_counter()
    category = load_category(dataset)
    rng = np.random.default_rng(seed)
    train = list(category.train)
    order = rng.permutation(len(train))
    shot_items = [train[i] for i in order[:shots]]
    extra_normals = [train[i] for i in order[shots:]]
    defects = [t for t in category.test if t.anomalous and t.mask_path is not None]
    defects = [defects[i] for i in rng.permutation(len(defects))]
    half = len(defects) // 2
    feedback_part, eval_defects = defects[:half], defects[half:]
    eval_items = [t for t in category.test if not t.anomalous] + eval_defects

    def mask_of(item: object, shape: tuple[int, int]) -> np.ndarray:
        path = getattr(item, "mask_path", None)
        return np.zeros(shape, np.uint8) if path is None else read_mask(path, expected_shape=shape)

    eval_images = [read_image(t.path) for t in eval_items]
    eval_masks = [mask_of(t, im.shape[:2]) for t, im in zip(eval_items, eval_images, strict=True)]
    labels = np.array([t.anomalous for t in eval_items])
    backbone = build_backbone("filterbank")
    expert = FewShotExpert(backbone, FewShotConfig(image_size=image_size))
    expert.fit([read_image(t.path) for t in shot_items])
    base = expert.predict(eval_images)
    normal_images = [read_image(t.path) for t in extra_normals]
    base_normal_maps = [m.map for m in expert.predict(normal_images)]

    def metrics(maps: list[object]) -> dict[str, float]:
        return {
            "image_auroc": round(auroc(labels, np.array([m.score for m in maps])), 4),  # type: ignore[attr-defined]
            "pixel_auroc": round(pixel_auroc([m.map for m in maps], eval_masks), 4),  # type: ignore[attr-defined]
        }

    curve: list[dict[str, object]] = [{"masks": 0, "fused": metrics(base)}]
    normal_examples = [
        MaskExample(im, np.zeros(im.shape[:2], np.uint8), Sample(str(t.path), "normal"))
        for t, im in zip(extra_normals, normal_images, strict=True)
    ]
    for count in feedback:
        chosen = feedback_part[:count]
        examples = normal_examples + [
            MaskExample(
                im, mask_of(t, im.shape[:2]), Sample(str(t.path), "anomalous", mask_path="gt")
            )
            for t, im in ((t, read_image(t.path)) for t in chosen)
        ]
        round_started = time.perf_counter()
        adapter = fit_adapter(
            backbone,
            examples,
            image_size=image_size,
            hyper=hyper,
            seed=seed,
        )
        own = adapter.predict(eval_images)
        # The adapter trained on these normals, so its unit is usually the floor.
        adapter_normal_maps = [m.map for m in adapter.predict(normal_images)]
        scales = JoinScales.measure(base_normal_maps, adapter_normal_maps)
        fused = [join_adapter(b, a, scales=scales) for b, a in zip(base, own, strict=True)]
        curve.append(
            {
                "masks": len(chosen),
                "adapter_alone": metrics(own),
                "fused": metrics(fused),
                "round_seconds": round(time.perf_counter() - round_started, 1),
            }
        )
        print(json.dumps(curve[-1]), flush=True)
    return {
        "dataset": str(dataset),
        "shots": shots,
        "image_size": image_size,
        "seed": seed,
        "feedback_defects": len(feedback_part),
        "eval_defects": len(eval_defects),
        "eval_normals": int((~labels).sum()),
        "training_normals": len(extra_normals),
        "curve": curve,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _adapter_hyperparameters(steps: int | None) -> AdapterHyperparameters:
    from training.kinds.adapter import AdapterHyperparameters

    return AdapterHyperparameters() if steps is None else AdapterHyperparameters(steps=steps)


def _handler(args: argparse.Namespace) -> int:
    if args.curve:
        report = learning_curve(
            args.curve,
            shots=args.shots,
            feedback=tuple(args.feedback),
            image_size=args.image_size,
            seed=args.seed,
            hyper=_adapter_hyperparameters(args.adapter_steps),
        )
    else:
        from workstation.device import resolve_device

        device = resolve_device(args.device)
        report = {"device": device}
        kinds = set(args.kinds.split(","))
        with tempfile.TemporaryDirectory() as tmp:
            if "adapter" in kinds:
                report["adapter_round"] = time_adapter_round(
                    Path(tmp) / "adapter",
                    masks=args.masks,
                    size=args.size,
                    steps=args.adapter_steps,
                    device=device,
                )
                print(json.dumps(report["adapter_round"]), file=sys.stderr, flush=True)
            if "selftaught" in kinds:
                report["selftaught_round"] = time_selftaught_round(
                    Path(tmp) / "selftaught",
                    normals_from=args.normals_from,
                    normals=args.normals,
                    image_size=args.image_size,
                    budget_minutes=args.budget_minutes,
                    device=device,
                )
                print(json.dumps(report["selftaught_round"]), file=sys.stderr, flush=True)
            if "vlm" in kinds and not args.skip_vlm:
                report["vlm_round"] = time_vlm_round(
                    Path(tmp) / "vlm", steps=args.vlm_steps, device=device
                )
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "training",
        help="time adapter / self-taught / VLM rounds; --curve: AUROC vs corrected masks",
    )
    parser.add_argument(
        "--curve",
        type=Path,
        metavar="DATASET_DIR",
        help="MVTec-layout folder for the learning curve instead of timings",
    )
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--feedback", type=int, nargs="+", default=[20, 40])
    parser.add_argument(
        "--image-size",
        type=int,
        default=ExpertSettings().image_size,
        help="the experts' working size for the curve and the self-taught round "
        "(default: the product default)",
    )
    parser.add_argument(
        "--kinds", default="adapter,selftaught,vlm", help="timing: which rounds, comma-separated"
    )
    parser.add_argument("--normals", type=int, default=45, help="timing: self-taught normals")
    parser.add_argument(
        "--normals-from",
        type=Path,
        metavar="DIR",
        help="timing: take the self-taught normals from this MVTec category",
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=8.0,
        help="timing: the self-taught round's training budget",
    )
    parser.add_argument("--masks", type=int, default=100, help="timing: defect masks")
    parser.add_argument("--size", type=int, default=512, help="timing: image size")
    parser.add_argument(
        "--adapter-steps",
        type=int,
        help="optimiser steps of each adapter round (default: the product's)",
    )
    parser.add_argument("--vlm-steps", type=int, default=30)
    parser.add_argument("--skip-vlm", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the report to this file")
    parser.set_defaults(handler=_handler)
