"""Few-shot / zero-shot evaluation on MVTec-layout categories, the way users measure it.

Per category: sample K ``train/good`` shots with the seed, fit and calibrate the expert
pipeline on them exactly as onboarding does, score every test image, and report image
AUROC, pixel AUROC, AUPRO (FPR <= 0.3), image F1-max and images/s. Pixel metrics are at
each image's own resolution (see ``workstation.core.metrics`` for the binning).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from training.kinds.selftaught import SelfTaughtHyperparameters
from workstation.core import metrics
from workstation.core.errors import UserError
from workstation.core.imageio import read_image, read_mask
from workstation.core.types import Product
from workstation.datasets.mvtec import LabeledImage, MVTecCategory, load_category
from workstation.experts.fewshot import FewShotConfig
from workstation.experts.pipeline import InspectionPipeline, PipelineConfig
from workstation.experts.pool import PoolExpert
from workstation.experts.registration import AlignMode
from workstation.experts.synthetic import SynthesisMix

EvalExpert = Literal["fewshot", "zeroshot", "selftaught", "fused", "fewshot+zeroshot", "pool"]
EXPERT_SETS: dict[str, tuple[str, ...]] = {
    "fewshot": ("fewshot",),
    "zeroshot": ("zeroshot",),
    "selftaught": (),
    "fused": ("fewshot",),
    "fewshot+zeroshot": ("fewshot", "zeroshot"),
    "pool": ("pool",),
}
"""The reference-based experts of each choice; ``selftaught`` and ``fused`` also train a
self-taught network on the sampled shots (``TRAINED``). ``pool`` is the few-shot expert
whose pool is the category's test images without their labels: what a station holds."""
TRAINED = ("selftaught", "fused")
ALL_SHOTS = 0
"""``shots`` value meaning every ``train/good`` image."""
METRIC_NAMES = ("image_auroc", "pixel_auroc", "aupro", "f1_max")
ProgressFactory = Callable[[int, str], Callable[[int, int], None]]


@dataclass(frozen=True)
class EvalConfig:
    expert: EvalExpert = "fewshot"
    backbone: str = "filterbank"
    shots: int = 8
    seed: int = 0
    image_size: int = 512
    clip_model: str = "clip-b16-plus"
    device: str = "cpu"
    position_aware: bool = False
    augment: bool = False
    budget_minutes: float = 8.0
    """Training time cap of the self-taught network (``selftaught`` and ``fused``)."""
    steps: int | None = None
    """Training steps of that network (None: the round's default). Whichever of steps
    and budget comes first ends training; a generous budget with fixed steps compares
    networks independently of how busy the machine is."""
    align: AlignMode = "off"
    drop_families: tuple[str, ...] = ()
    """Synthetic defect families left out of the self-taught training (ablations)."""
    encoder: str = "scratch"
    """Initial weights of the self-taught network's encoder (``selftaught.ENCODERS``)."""
    select: bool = True
    """Choose the fusion (and the backbone when ``auto``) on evidence made from the shots
    (``experts.choosing``); off: every expert joins with weight 1 (the old fixed fusion)."""
    labelled: int = 0
    """Test anomalies handed to the fit as confirmed defects (then left out of the
    scores): measures what each labelled anomaly is worth."""

    def __post_init__(self) -> None:
        if self.expert not in EXPERT_SETS:
            raise UserError(f"--expert must be one of {', '.join(EXPERT_SETS)}")
        if self.shots < 0:
            raise UserError("--shots must be >= 0 (0: every train/good image)")
        if self.labelled < 0:
            raise UserError("--labelled must be >= 0")
        self.selftaught_hyperparameters()  # the round's own checks, now rather than later

    def selftaught_hyperparameters(self) -> SelfTaughtHyperparameters:
        """The self-taught round's typed hyperparameters: the one place the evaluation's
        options become them (the round checks the values)."""
        families = dict(SynthesisMix.without(*self.drop_families).weights)
        return SelfTaughtHyperparameters(
            budget_minutes=self.budget_minutes,
            families=families if self.drop_families else {},
            encoder=self.encoder,
            **({} if self.steps is None else {"steps": self.steps}),
        )

    def pipeline_config(self, selftaught_path: str | None = None) -> PipelineConfig:
        return PipelineConfig(
            experts=EXPERT_SETS[self.expert],
            trained={} if selftaught_path is None else {"selftaught": selftaught_path},
            align=self.align,
            select=self.select,
            backbone=self.backbone,
            clip_model=self.clip_model,
            fewshot=FewShotConfig(
                image_size=self.image_size,
                position_aware=self.position_aware,
                augment=self.augment,
                seed=self.seed,
            ),
        )


@dataclass(frozen=True)
class CategoryResult:
    image_auroc: float | None
    pixel_auroc: float | None
    aupro: float | None
    f1_max: float | None
    n_test: int
    n_shots: int
    fit_seconds: float
    images_per_second: float
    train_seconds: float = 0.0
    """Training the self-taught network on the shots (0 when none is trained)."""
    train_steps: int = 0
    """Steps the network reached in that time: a time budget buys fewer on a busy machine."""
    fusion: str | None = None
    """The fusion the fit chose on its own evidence (None when there was no choice)."""
    labelled: int = 0


def find_categories(root: Path) -> list[Path]:
    """``root`` itself when it is one category, else its subfolders that are categories."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder")
    if (root / "train" / "good").is_dir():
        return [root]
    found = sorted(p for p in root.iterdir() if (p / "train" / "good").is_dir())
    if not found:
        raise UserError(
            f"{root} has no MVTec-layout category (a folder with train/good and test/<label>)"
        )
    return found


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def evaluate_category(
    root: Path, config: EvalConfig, *, progress: Callable[[int, int], None] | None = None
) -> CategoryResult:
    category = load_category(root)
    needs_shots = config.expert != "zeroshot"  # the zero-shot expert only reads words
    available = len(category.train)
    if config.shots > available:
        raise UserError(
            f"{root.name}: {config.shots} shots asked for but train/good has only "
            f"{available} images"
        )
    rng = np.random.default_rng(config.seed)
    everything = available if needs_shots else 1
    count = everything if config.shots == ALL_SHOTS else config.shots
    chosen = sorted(rng.choice(available, size=count, replace=False).tolist())
    shots = [read_image(category.train[i].path) for i in chosen]
    confirmed = _confirmed_defects(category, config)
    product = Product(id=0, name=root.name.replace("_", " "))
    with tempfile.TemporaryDirectory(prefix="iad-eval-") as scratch:
        train_seconds, train_steps = 0.0, 0
        selftaught_path = None
        if config.expert in TRAINED:
            started = time.perf_counter()
            folder, train_steps = _train_selftaught(shots, config, Path(scratch))
            selftaught_path = str(folder)
            train_seconds = time.perf_counter() - started
        pipeline = InspectionPipeline(
            config.pipeline_config(selftaught_path), product=product, device=config.device
        )
        started = time.perf_counter()
        pipeline.fit(shots, anomalies=[(read_image(i.path), _mask_of(i)) for i in confirmed])
        fit_seconds = time.perf_counter() - started
        bank = pipeline.bank_expert()
        if isinstance(bank, PoolExpert):
            bank.set_pool([read_image(item.path) for item in category.test])
        return _score_test_images(
            category,
            pipeline,
            skip={item.path for item in confirmed},
            n_shots=count,
            fit_seconds=fit_seconds,
            train_seconds=train_seconds,
            train_steps=train_steps,
            progress=progress,
        )


def _confirmed_defects(category: MVTecCategory, config: EvalConfig) -> list[LabeledImage]:
    """``config.labelled`` anomalous test images (seeded), playing confirmed defects."""
    anomalous = [item for item in category.test if item.anomalous]
    if config.labelled > len(anomalous):
        raise UserError(
            f"{category.name}: {config.labelled} labelled anomalies asked for but the test "
            f"set has only {len(anomalous)}"
        )
    rng = np.random.default_rng(config.seed + 1)
    picked = sorted(rng.choice(len(anomalous), size=config.labelled, replace=False).tolist())
    return [anomalous[i] for i in picked]


def _mask_of(item: LabeledImage) -> np.ndarray | None:
    return None if item.mask_path is None else read_mask(item.mask_path)


def _train_selftaught(
    shots: list[np.ndarray], config: EvalConfig, scratch: Path
) -> tuple[Path, int]:
    """Train a self-taught network on the shots (never on test images); its folder and
    the steps it reached."""
    from training.selftaught_round import fit_selftaught

    expert, record = fit_selftaught(
        shots,
        image_size=config.image_size,
        hyper=config.selftaught_hyperparameters(),
        seed=config.seed,
        device=config.device,
    )
    return expert.save(scratch / "selftaught"), record.steps


def _score_test_images(
    category: MVTecCategory,
    pipeline: InspectionPipeline,
    *,
    n_shots: int,
    fit_seconds: float,
    train_seconds: float,
    train_steps: int,
    progress: Callable[[int, int], None] | None,
    skip: set[Path] = frozenset(),  # type: ignore[assignment]
) -> CategoryResult:
    labels: list[bool] = []
    scores: list[float] = []
    maps: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    predict_seconds = 0.0
    scored = [item for item in category.test if item.path not in skip]
    total = len(scored)
    for index, item in enumerate(scored):
        image = read_image(item.path)
        started = time.perf_counter()
        result = pipeline.predict([image])[0]
        predict_seconds += time.perf_counter() - started
        labels.append(item.anomalous)
        scores.append(result.score)
        if item.anomalous and item.mask_path is None:
            pass  # no ground truth: counts for image metrics only
        else:
            mask = (
                read_mask(item.mask_path, expected_shape=image.shape[:2])
                if item.mask_path is not None
                else np.zeros(image.shape[:2], dtype=np.uint8)
            )
            maps.append(result.map.astype(np.float16))
            masks.append(mask)
        if progress:
            progress(index + 1, total)
    label_array = np.asarray(labels)
    score_array = np.asarray(scores)
    has_defect_pixels = any(m.any() for m in masks)
    return CategoryResult(
        image_auroc=_finite(metrics.auroc(label_array, score_array)),
        pixel_auroc=_finite(metrics.pixel_auroc(maps, masks)) if has_defect_pixels else None,
        aupro=_finite(metrics.aupro(maps, masks)) if has_defect_pixels else None,
        f1_max=_finite(metrics.f1_max(label_array, score_array)),
        n_test=total,
        n_shots=n_shots,
        fit_seconds=round(fit_seconds, 3),
        images_per_second=round(total / max(predict_seconds, 1e-9), 2),
        train_seconds=round(train_seconds, 1),
        train_steps=train_steps,
        fusion=pipeline.choice.summary() if pipeline.choice is not None else None,
        labelled=len(skip),
    )


def evaluate(
    root: Path, config: EvalConfig, *, progress_factory: ProgressFactory | None = None
) -> dict[str, object]:
    """Evaluate every category under ``root``; the JSON-ready report."""
    results: dict[str, dict[str, object]] = {}
    for category in find_categories(root):
        progress = None
        if progress_factory is not None:
            progress = progress_factory(0, f"{category.name}")
        results[category.name] = asdict(evaluate_category(category, config, progress=progress))
    mean: dict[str, float | None] = {}
    for key in (*METRIC_NAMES, "images_per_second"):
        values = [r[key] for r in results.values() if r[key] is not None]
        mean[key] = float(np.mean(values)) if values else None  # type: ignore[arg-type]
    return {"categories": results, "mean": mean, "config": asdict(config)}
