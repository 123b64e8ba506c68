"""One self-taught round: normals -> network -> model folder -> held-out judgement.

The product's normals on the round's train side are split once more: most teach the
network, the rest stay unseen so the fusion can put the network's output in honest normal
units (``InspectionPipeline.fit``). The held-out side of the manifest is never trained on
and never in the few-shot bank; the gate judges on it, comparing what the inspector has
now ("before": few-shot, plus the parent network if one is active) with the candidate
("after": few-shot plus the new network), both built and calibrated exactly as the
product builds them:

- false alarms on held-out normals (score above the calibrated threshold) must not rise;
- synthetic defects painted into the held-out normals must be found at least as well;
- real held-out defects and the golden set (inspector corrections) must not regress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from training import distributed
from training.contract import NotEnoughFeedbackError, ProgressEvent, RoundManifest
from training.data import MaskExample, mask_examples
from training.evaluate import ScoredSample, gate, held_out_metrics
from training.selftaught import (
    SelfTaughtHyperparameters,
    TrainingRecord,
    input_statistics,
    train_network,
)
from workstation.core.imageio import read_image
from workstation.core.metrics import auroc, pixel_auroc
from workstation.experts.features import resize_rgb, to_rgb_uint8, working_shape
from workstation.experts.fewshot import FewShotConfig
from workstation.experts.pipeline import InspectionPipeline, PipelineConfig
from workstation.experts.selftaught import (
    SIZE_MULTIPLE,
    NormalFingerprints,
    SelfTaughtConfig,
    SelfTaughtExpert,
    encoder_statistics,
)
from workstation.experts.synthetic import DefectSynthesizer, SynthesisMix

Emit = Callable[[ProgressEvent], None]
STEP_EVENT_S = 0.5
SYNTHETIC_PER_NORMAL = 2
"""Synthetic defects painted into each held-out normal for the gate's detection check."""
SYNTHETIC_SEED = 12345
"""Fixed, so that before and after (and every round) are judged on the same defects."""


def split_for_calibration(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(indices to train on, indices kept unseen); the network always gets at least one."""
    keep_out = min(round(count * fraction), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    return sorted(order[keep_out:].tolist()), sorted(order[:keep_out].tolist())


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def fit_selftaught(
    normals: Sequence[np.ndarray],
    *,
    image_size: int,
    hyper: SelfTaughtHyperparameters,
    seed: int,
    device: str = "cpu",
    defects: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    checkpoint_dir: Path | None = None,
    on_step: Callable[[int, int, float, float], None] | None = None,
) -> tuple[SelfTaughtExpert, TrainingRecord]:
    """Train a network on most of ``normals`` (the rest stay unseen for calibration).

    Shared by rounds, ``eval --expert selftaught|fused`` and the demo model's recipe, so
    all three get the same expert from the same images.
    """
    if not normals:
        raise NotEnoughFeedbackError("the self-taught round needs at least one normal image")
    shape = working_shape(
        [im.shape[:2] for im in normals], image_size=image_size, multiple=SIZE_MULTIPLE
    )
    train_idx, _ = split_for_calibration(len(normals), hyper.calibration_fraction, seed)
    fit_normals = [resize_rgb(to_rgb_uint8(normals[i]), shape) for i in train_idx]
    resized_defects = [
        (resize_rgb(to_rgb_uint8(im), shape), resize_mask(m, shape)) for im, m in defects
    ]
    mean, std = encoder_statistics(hyper.encoder) or input_statistics(fit_normals)
    config = SelfTaughtConfig(
        shape=shape, mean=mean, std=std, width=hyper.width, encoder=hyper.encoder  # type: ignore[arg-type]
    )
    network, record = train_network(
        fit_normals,
        config,
        hyper,
        defects=resized_defects,
        seed=seed,
        device=device,
        checkpoint_dir=checkpoint_dir,
        on_step=on_step,
    )
    config = replace(
        config,
        trained={
            "steps": float(record.steps),
            "seconds": record.seconds,
            "normals": float(len(fit_normals)),
            "real_defects": float(len(resized_defects)),
        },
    )
    expert = SelfTaughtExpert(
        network, config, fingerprints=NormalFingerprints.of(fit_normals), device=device
    )
    return expert, record


def synthetic_examples(
    normals: Sequence[np.ndarray], *, shape: tuple[int, int], mix: SynthesisMix
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, mask) pairs of the gate's detection check: defects painted into held-out
    normals at the working size, the same ones for every side of every round."""
    resized = [resize_rgb(to_rgb_uint8(im), shape) for im in normals]
    synthesizer = DefectSynthesizer(resized, mix)
    rng = np.random.default_rng(SYNTHETIC_SEED)
    out = []
    for image in resized:
        for _ in range(SYNTHETIC_PER_NORMAL):
            painted = synthesizer.make(image, rng)
            if painted.mask.any():
                out.append((painted.image, painted.mask))
    return out


SYNTHETIC_RECALL = "held_out_synthetic_recall"


def side_metrics(
    pipeline: InspectionPipeline,
    *,
    held_normals: Sequence[np.ndarray],
    synthetic: Sequence[tuple[np.ndarray, np.ndarray]],
    real: Sequence[MaskExample],
    threshold: float = 1.0,
) -> dict[str, float]:
    """What one side (before or after) does on the held-out images, judged at the
    product's decision ``threshold`` (calibrated units; an engineer may have moved it)."""
    normal_maps = pipeline.predict(list(held_normals))
    synthetic_maps = pipeline.predict([im for im, _ in synthetic])
    out: dict[str, float] = {}
    normal_scores = np.asarray([m.score for m in normal_maps])
    out["held_out_false_alarm_rate"] = float((normal_scores > threshold).mean())
    if synthetic:
        synthetic_scores = np.asarray([m.score for m in synthetic_maps])
        labels = np.r_[np.zeros(normal_scores.size), np.ones(synthetic_scores.size)]
        out["held_out_synthetic_image_auroc"] = auroc(
            labels, np.r_[normal_scores, synthetic_scores]
        )
        out[SYNTHETIC_RECALL] = float((synthetic_scores > threshold).mean())
        resized_normals = [m.map for m in normal_maps]
        normal_masks = [np.zeros(m.shape, np.uint8) for m in resized_normals]
        out["held_out_synthetic_pixel_auroc"] = pixel_auroc(
            resized_normals + [m.map for m in synthetic_maps],
            normal_masks + [mask for _, mask in synthetic],
        )
    if real:
        maps = pipeline.predict([e.image for e in real])
        scored = [
            ScoredSample(m.map, m.score, True, e.mask, e.sample.golden)
            for m, e in zip(maps, real, strict=True)
        ]
        # The held-out normals are the other class of the real-defect metrics.
        scored += [
            ScoredSample(m.map, m.score, False, np.zeros(m.map.shape, np.uint8), False)
            for m in normal_maps
        ]
        out |= {k: v for k, v in held_out_metrics(scored).items() if not k.endswith("count")}
    return out


def selftaught_gate(
    before: dict[str, float], after: dict[str, float], *, tolerance: float
) -> tuple[bool, str]:
    """Promote only if no false alarm is added and nothing is detected worse."""
    rate = "held_out_false_alarm_rate"
    problems = []
    if after.get(rate, 0.0) > before.get(rate, 0.0) + 1e-9:
        problems.append(f"false alarms on held-out normals {before[rate]:.1%} -> {after[rate]:.1%}")
    # Recall at the threshold is one point on the detection curve. When false alarms fell,
    # the threshold moved along the curve and some recall is its price; the curve's area
    # (image AUROC) and the pixel metrics judge detection then. At an unchanged false-alarm
    # rate the two points are comparable and recall is judged too.
    fewer_alarms = after.get(rate, 0.0) < before.get(rate, 0.0) - 1e-9
    skipped = {rate} | ({SYNTHETIC_RECALL} if fewer_alarms else set())
    detection = {k: v for k, v in before.items() if k not in skipped}
    quality = gate(
        detection, {k: v for k, v in after.items() if k not in skipped}, tolerance=tolerance
    )
    if not quality.promote:
        problems.append(quality.reason)
    if problems:
        return False, "; ".join(problems)
    return (
        True,
        quality.reason + f"; false alarms {before.get(rate, 0):.1%} -> {after.get(rate, 0):.1%}",
    )


def _pipeline(
    manifest: RoundManifest,
    references: Sequence[np.ndarray],
    selftaught: Path | None,
    device: str,
) -> InspectionPipeline:
    config = PipelineConfig(
        backbone=manifest.backbone,
        fewshot=FewShotConfig(image_size=manifest.image_size),
        trained={} if selftaught is None else {"selftaught": str(selftaught)},
    )
    pipeline = InspectionPipeline(config, device=device)
    pipeline.fit(list(references))
    return pipeline


def run_selftaught_round(
    manifest: RoundManifest, out: Path, *, device: str, emit: Emit
) -> dict[str, object]:
    """Train, save into ``out`` and judge on the held-out side; the metrics record."""
    hyper: SelfTaughtHyperparameters = manifest.typed_hyperparameters()
    train_normals = [read_image(s.image_path) for s in manifest.train if s.label == "normal"]
    if not train_normals:
        raise NotEnoughFeedbackError(
            "no normal images on the round's train side; import images labelled good"
        )
    real = [e for e in mask_examples(manifest.train) if e.sample.label == "anomalous"]
    last = [-float("inf")]
    started = time.monotonic()

    def on_step(step: int, total: int, loss: float, progress: float) -> None:
        now = time.monotonic()
        if now - last[0] >= STEP_EVENT_S or progress >= 1.0:
            last[0] = now
            elapsed = now - started
            eta = elapsed / progress * (1 - progress) if progress > 0 else None
            # On a slow machine the time budget ends the round before ``total`` steps:
            # report the steps it will actually reach, so a progress bar fills up.
            expected = min(total, max(step, round(step / progress))) if progress > 0 else total
            emit(ProgressEvent("step", step=step, total=expected, loss=loss, eta_s=eta))

    checkpoint = manifest.extras.checkpoint_dir
    candidate, record = fit_selftaught(
        train_normals,
        image_size=manifest.image_size,
        hyper=hyper,
        seed=manifest.seed,
        device=device,
        defects=[(e.image, e.mask) for e in real],
        checkpoint_dir=None if checkpoint is None else Path(checkpoint),
        on_step=on_step,
    )
    if not distributed.world().is_main:
        return {}  # rank 0 alone saves, judges and decides
    candidate.save(out)
    result: dict[str, object] = {
        "training": {
            "steps": record.steps,
            "seconds": record.seconds,
            "resumed_from_step": record.resumed_from_step,
            "final_loss": record.final_loss,
        }
    }
    held_normals = [read_image(s.image_path) for s in manifest.held_out if s.label == "normal"]
    held_real = mask_examples([s for s in manifest.held_out if s.label == "anomalous"])
    if not held_normals:
        return result | {
            "before": {},
            "after": {},
            "promote": False,
            "reason": "no held-out normal images to judge on; promote it by hand if it looks right",
        }
    emit(ProgressEvent("start", message="judging the candidate on held-out images"))
    synthetic = synthetic_examples(held_normals, shape=candidate.config.shape, mix=hyper.mix())
    parent = manifest.extras.parent
    sides = {}
    for side, folder in (("before", parent), ("after", out)):
        pipeline = _pipeline(
            manifest, train_normals, None if folder is None else Path(folder), device
        )
        sides[side] = side_metrics(
            pipeline,
            held_normals=held_normals,
            synthetic=synthetic,
            real=held_real,
            threshold=manifest.extras.decision_threshold,
        )
    promote, reason = selftaught_gate(
        sides["before"], sides["after"], tolerance=manifest.extras.regression_tolerance
    )
    return result | {
        "before": sides["before"],
        "after": sides["after"],
        "promote": promote,
        "reason": reason,
    }
