"""``bench explain --types DATASET``: replay a review and measure the learned defect types.

A category folder in MVTec layout (``test/<type>/``, ``ground_truth/<type>/``; one region
per image, types named by the folders), or ``demo`` (the generated demo product, five
types). The product's experts are fitted on its ``train/good`` images exactly as onboarding
fits them, every defect is scored, and its region vector is measured once on its
ground-truth region with the fused map. Then, for each seed and each k in ``--shots``,
k defects per type play the corrected examples and every other defect is drafted:

- type accuracy and macro-F1 of the learned head, its unsure share and its accuracy when
  sure, against the template's shape rules on the same defects;
- with ``--texts FILE`` (JSON lines ``{"image": "crack/002.png", "text": "..."}``), the
  text encoder's similarity of each draft to the inspector's text, learned against template;
- ``--round-defects N``: one real ``types`` round (``python -m training``, as the app runs
  it) on N reviewed defects, timed end to end, with the machine's load beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workstation.config import ExpertSettings
from workstation.core.errors import UserError
from workstation.core.imageio import read_image, read_mask
from workstation.core.types import NORMAL_LABEL, AnomalyMap, Product
from workstation.datasets.layouts import read_mvtec_splits
from workstation.experts.defect_types import DefectTypeHead, Exemplar, HeadSettings
from workstation.experts.pipeline import InspectionPipeline, PipelineConfig
from workstation.experts.regions import PatchSource, region_vector
from workstation.explain import template
from workstation.explain.drafts import TypeAnswer, learned_description
from workstation.explain.regions import region_mask
from workstation.services.typed_drafts import answer_of

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Defect:
    """One defect image of the dataset, measured once."""

    name: str
    defect_type: str
    vector: np.ndarray
    groups: tuple[tuple[str, int], ...]
    template_type: str
    template_text: str
    facts: template.RegionFacts
    image_path: str
    mask: np.ndarray
    map: np.ndarray
    text: str = ""


def demo_dataset(folder: Path, per_type: int) -> Path:
    from workstation.demo.generator import DemoSpec, generate

    return generate(folder, DemoSpec(per_defect=per_type)).root


def read_texts(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    texts: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            texts[str(row["image"])] = str(row["text"])
        except (json.JSONDecodeError, KeyError, TypeError):
            expected = '{"image": ..., "text": ...}'
            raise UserError(f"{path}:{number}: expected {expected}") from None
    return texts


def fit_experts(
    folder: Path, settings: ExpertSettings, normals: int
) -> tuple[InspectionPipeline, list[Any]]:
    """The product's experts fitted on its train/good images, and the defect items."""
    splits = read_mvtec_splits(folder)
    goods = [i for i in splits.items if i.split == "train" and i.label == NORMAL_LABEL]
    defects = [i for i in splits.items if i.label != NORMAL_LABEL and i.mask is not None]
    if not goods or len({i.label for i in defects}) < 2:
        raise UserError(
            f"{folder} needs train/good images and masked defects of at least two types "
            "(test/<type>/ with ground_truth/<type>/)"
        )
    step = max(1, len(goods) // normals)
    chosen = [read_image(i.path) for i in goods[::step][:normals]]
    pipeline = InspectionPipeline(PipelineConfig.from_settings(settings))
    pipeline.fit(chosen)
    return pipeline, defects


def measure_defects(
    pipeline: InspectionPipeline,
    items: Sequence[Any],
    vocabulary: tuple[str, ...],
    texts: dict[str, str],
    progress: Progress,
) -> list[Defect]:
    fewshot = pipeline.experts.get("fewshot")
    backbone = getattr(fewshot, "backbone", None)
    if backbone is None:
        raise UserError("the types bench needs the few-shot expert enabled")
    source = PatchSource(backbone, expert=fewshot)  # type: ignore[arg-type]
    product = Product(id=0, name="bench", defect_vocabulary=vocabulary)
    defects = []
    for index, item in enumerate(items, start=1):
        image = read_image(item.path)
        mask = (read_mask(item.mask) > 0).astype(np.uint8)
        if mask.shape != image.shape[:2] or not mask.any():
            continue
        fused = pipeline.predict([image])[0]
        amap = AnomalyMap(fused.map, score=fused.score, threshold=1.0)
        said = template.explain(amap, mask=mask, product=product)
        facts = template.region_facts(amap, region_mask(amap, mask), from_mask=True)
        vector = region_vector(image, mask, fused.map, 1.0, source)
        name = f"{item.label}/{Path(item.path).name}"
        assert facts is not None  # the mask is not empty
        defects.append(
            Defect(
                name, item.label, vector.values, vector.groups, said.defect_type,
                said.description, facts, str(item.path), mask, fused.map, texts.get(name, ""),
            )
        )
        if index % 20 == 0:
            progress(f"measured {index}/{len(items)} defects")
    return defects


def type_scores(truth: Sequence[str], said: Sequence[str]) -> tuple[float, float]:
    from training.types_round import type_scores as scores

    out = scores(truth, said, "")
    return out["type_accuracy"], out["type_macro_f1"]


def _exemplar(defect: Defect) -> Exemplar:
    return Exemplar(defect.defect_type, defect.name, "inspector", defect.text)


def replay(
    defects: Sequence[Defect],
    *,
    shots: Sequence[int],
    seeds: int,
    settings: HeadSettings,
    encoder: Any | None = None,
) -> list[dict[str, Any]]:
    """One row per k: means over seeds of the head's and the template's scores."""
    types = sorted({d.defect_type for d in defects})
    by_type = {t: [i for i, d in enumerate(defects) if d.defect_type == t] for t in types}
    rows = []
    for k in shots:
        short = [t for t in types if len(by_type[t]) <= k]
        if short:
            rows.append({"k": k, "skipped": f"types with at most {k} defects: {short}"})
            continue
        runs: dict[str, list[float]] = {}
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            train = [int(i) for t in types for i in rng.choice(by_type[t], k, replace=False)]
            test = [i for i in range(len(defects)) if i not in set(train)]
            started = time.perf_counter()
            head = DefectTypeHead.fit(
                np.stack([defects[i].vector for i in train]),
                [_exemplar(defects[i]) for i in train],
                defects[0].groups,
                settings=settings,
                seed=seed,
            )
            fit_s = time.perf_counter() - started
            predictions = [head.predict(defects[i].vector) for i in test]
            truth = [defects[i].defect_type for i in test]
            accuracy, macro_f1 = type_scores(truth, [p.best for p in predictions])
            t_acc, t_f1 = type_scores(truth, [defects[i].template_type for i in test])
            sure = [(p.best == t) for p, t in zip(predictions, truth, strict=True) if not p.unsure]
            values = {
                "accuracy": accuracy,
                "macro_f1": macro_f1,
                "template_accuracy": t_acc,
                "template_macro_f1": t_f1,
                "unsure_share": 1 - len(sure) / len(test),
                "accuracy_when_sure": float(np.mean(sure)) if sure else float("nan"),
                "mean_confidence": float(np.mean([p.confidence for p in predictions])),
                "fit_s": fit_s,
            }
            if encoder is not None:
                values |= _text_similarity(defects, test, predictions, encoder)
            for key, value in values.items():
                runs.setdefault(key, []).append(value)
        tested = len(defects) - k * len(types)
        row: dict[str, Any] = {"k": k, "seeds": seeds, "test_defects": tested}
        for key, values in runs.items():
            finite = [v for v in values if np.isfinite(v)]
            row[key] = round(float(np.mean(finite)), 4) if finite else None
            if key in ("accuracy", "template_accuracy"):
                row[f"{key}_sd"] = round(float(np.std(finite)), 4) if finite else None
        rows.append(row)
    return rows


def _text_similarity(
    defects: Sequence[Defect], test: Sequence[int], predictions: Sequence[Any], encoder: Any
) -> dict[str, float]:
    pairs = [(defects[i], p) for i, p in zip(test, predictions, strict=True) if defects[i].text]
    if not pairs:
        return {}
    drafts = []
    for defect, prediction in pairs:
        answer: TypeAnswer = answer_of(prediction)
        drafts.append(learned_description(answer, defect.facts, defect.template_text))
    truth = encoder.encode([d.text for d, _ in pairs])
    learned = (encoder.encode(drafts) * truth).sum(1)
    plain = (encoder.encode([d.template_text for d, _ in pairs]) * truth).sum(1)
    return {
        "text_similarity": float(learned.mean()),
        "template_text_similarity": float(plain.mean()),
    }


def time_round(
    defects: Sequence[Defect],
    pipeline: InspectionPipeline,
    settings: ExpertSettings,
    count: int,
    vocabulary: tuple[str, ...],
) -> dict[str, Any]:
    """One real types round on ``count`` defects through ``python -m training``, timed."""
    from training.contract import RoundExtras, RoundManifest, Sample
    from workstation.services.defect_types import split_by_type
    from workstation.services.rounds import child_command, child_env

    types = sorted({d.defect_type for d in defects})
    ordered = [d for group in zip(*[[d for d in defects if d.defect_type == t] for t in types],
                                  strict=False) for d in group]
    chosen = (ordered + [d for d in defects if d not in ordered])[:count]
    with tempfile.TemporaryDirectory(prefix="types-round-") as temp:
        root = Path(temp)
        experts = pipeline.save(root / "experts")
        samples = []
        for index, defect in enumerate(chosen):
            np.save(root / f"m{index}.npy", defect.mask)
            np.save(root / f"a{index}.npy", defect.map.astype(np.float32))
            samples.append(
                Sample(
                    image_path=defect.image_path, label="anomalous", image_id=index,
                    mask_path=str(root / f"m{index}.npy"), map_path=str(root / f"a{index}.npy"),
                    author="bench", explanation={"defect_type": defect.defect_type,
                                                 "description": defect.text},
                )
            )
        train, held = split_by_type(samples, holdout_fraction=0.3, seed=0)
        manifest = RoundManifest(
            product="bench", kind="types", backbone=settings.backbone, base_model="",
            train=tuple(train), held_out=tuple(held),
            extras=RoundExtras(experts=str(experts)),
            image_size=settings.image_size,
            product_context={"defect_vocabulary": list(vocabulary)},
        )
        path = manifest.save(root / "manifest.json")
        load_before = os.getloadavg()
        started = time.perf_counter()
        done = subprocess.run(
            child_command(path, root / "out", "cpu"), env=child_env(), capture_output=True,
            text=True, check=False,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise UserError(f"the types round failed: {done.stdout[-500:]} {done.stderr[-500:]}")
        metrics = json.loads((root / "out" / "metrics.json").read_text(encoding="utf-8"))
        shutil.rmtree(root / "out", ignore_errors=True)
    return {
        "defects": len(chosen),
        "wall_s": round(seconds, 2),
        "round_s_inside": metrics.get("seconds"),
        "promote": metrics.get("promote"),
        "after": metrics.get("after"),
        "before": metrics.get("before"),
        "load_1m_before": round(load_before[0], 2),
        "load_1m_after": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def run_types_bench(args: Any, progress: Progress) -> dict[str, Any]:
    """The ``--types`` part of ``bench explain`` (options in ``add_types_options``)."""
    shots = [int(k) for k in str(args.shots).split(",") if k.strip()]
    if not shots or min(shots) < 1 or args.seeds < 1 or args.per_type < 2:
        raise UserError("--shots must be positive integers, --seeds >= 1, --per-type >= 2")
    settings = ExpertSettings(
        backbone=args.backbone or ExpertSettings().backbone, image_size=args.image_size
    )
    with tempfile.TemporaryDirectory(prefix="types-bench-") as temp:
        if str(args.types) == "demo":
            folder = demo_dataset(Path(temp), args.per_type)
        else:
            folder = Path(args.types)
            if not folder.is_dir():
                raise UserError(f"no dataset folder at {folder}")
        started = time.perf_counter()
        pipeline, items = fit_experts(folder, settings, args.normals)
        vocabulary = tuple(sorted({i.label for i in items}))
        progress(f"experts fitted in {time.perf_counter() - started:.1f} s; measuring "
                 f"{len(items)} defects")
        texts = read_texts(args.texts)
        started = time.perf_counter()
        defects = measure_defects(pipeline, items, vocabulary, texts, progress)
        measure_s = time.perf_counter() - started
        encoder = None
        if texts:
            from workstation.explain.text_encoder import text_encoder

            encoder = text_encoder(args.encoder)
        rows = replay(defects, shots=shots, seeds=args.seeds, settings=HeadSettings(),
                      encoder=encoder)
        report: dict[str, Any] = {
            "dataset": str(args.types),
            "types": {t: sum(d.defect_type == t for d in defects) for t in vocabulary},
            "backbone": settings.backbone,
            "image_size": settings.image_size,
            "defects": len(defects),
            "measure_s_per_defect": round(measure_s / max(len(defects), 1), 3),
            "text_encoder": getattr(encoder, "name", None),
            "shots": rows,
        }
        if args.round_defects:
            report["round"] = time_round(
                defects, pipeline, settings, args.round_defects, vocabulary
            )
    return report


def add_types_options(parser: Any) -> None:
    parser.add_argument(
        "--types", metavar="DATASET",
        help="replay a review of defect types on an MVTec category folder (or 'demo')",
    )
    parser.add_argument("--shots", default="1,3,5,10", help="corrected examples per type")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-type", type=int, default=25, help="demo defects per type")
    parser.add_argument("--backbone", help="the experts' backbone (default: filterbank)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--normals", type=int, default=16, help="train/good images fitted")
    parser.add_argument("--texts", type=Path, help="JSON lines of inspector texts per image")
    parser.add_argument("--encoder", default="auto", choices=("auto", "minilm", "ngram"))
    parser.add_argument(
        "--round-defects", type=int, default=0, metavar="N",
        help="also time one real types round on N reviewed defects",
    )
