"""One adapter round: features -> head -> adapter folder -> held-out metrics before/after.

"Before" is what the inspector has now: the few-shot expert on the product's references,
joined with the parent adapter when there is one; "after" swaps in the new head. Both are
scored on the same held-out images (golden set included), so the gate compares like with like.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from training import distributed
from training.adapter import EtaClock, mask_targets, train_head
from training.contract import ProgressEvent, RoundManifest
from training.data import MaskExample, mask_examples
from training.evaluate import ScoredSample, gated_result, held_out_metrics
from training.kinds.adapter import AdapterHyperparameters, check_feedback
from workstation.core.imageio import read_image
from workstation.core.types import AnomalyMap
from workstation.experts.adapter import (
    AdapterConfig,
    AdapterExpert,
    JoinScales,
    adapter_shape,
    extract_features,
    join_adapter,
    save_adapter,
)
from workstation.experts.base import Backbone, build_backbone
from workstation.experts.fewshot import FewShotConfig, FewShotExpert

Emit = Callable[[ProgressEvent], None]
CALIBRATION_IMAGES = 16
"""Normal images used to find the base map's scale: a 99th percentile over this many
images' pixels is already stable, and each one costs a few-shot prediction."""
STEP_EVENT_S = 0.5
"""At most one step event per this many seconds (plus the first and last): a smooth bar,
not a flood of lines."""


def adapter_targets(masks: Sequence[np.ndarray], grid: tuple[int, int]) -> torch.Tensor:
    """Image-sized 0/1 masks -> ``(N, 1, h, w)`` defect fraction per cell of the head's grid."""
    return torch.cat([mask_targets(torch.from_numpy(m)[None, None], grid) for m in masks])


def fit_adapter(
    backbone: Backbone,
    examples: Sequence[MaskExample],
    *,
    image_size: int,
    hyper: AdapterHyperparameters,
    seed: int,
    base_model: str = "",
    emit: Emit | None = None,
    parent: AdapterExpert | None = None,
) -> AdapterExpert:
    """Train a head on ``examples`` (masks and normals) and wrap it as an expert.

    ``image_size`` is the few-shot expert's working size; the head works ``hyper.detail``
    times finer (never finer than the images themselves).
    """
    shape = adapter_shape(
        backbone, [e.image.shape[:2] for e in examples], round(image_size * hyper.detail)
    )
    feats = extract_features(
        backbone, [e.image for e in examples], shape=shape, dtype=torch.float16
    )
    targets = adapter_targets([e.mask for e in examples], (feats.shape[2], feats.shape[3]))
    return fit_adapter_features(
        backbone,
        feats,
        targets.to(feats.device),
        shape=shape,
        hyper=hyper,
        seed=seed,
        base_model=base_model,
        emit=emit,
        parent=parent,
    )


def fit_adapter_features(
    backbone: Backbone,
    feats: torch.Tensor,
    targets: torch.Tensor,
    *,
    shape: tuple[int, int],
    hyper: AdapterHyperparameters,
    seed: int,
    base_model: str = "",
    emit: Emit | None = None,
    parent: AdapterExpert | None = None,
) -> AdapterExpert:
    """:func:`fit_adapter` on features already extracted at ``shape`` (``extract_features``)
    and their :func:`adapter_targets`: a caller that trains many rounds on overlapping
    images (the active-learning simulation) extracts each image's features once."""
    clock = EtaClock()
    last_emit = [-float("inf")]

    def on_step(step: int, total: int, loss: float) -> None:
        now = time.monotonic()
        if emit is not None and (now - last_emit[0] >= STEP_EVENT_S or step == total):
            last_emit[0] = now
            emit(
                ProgressEvent(
                    "step", step=step, total=total, loss=loss, eta_s=clock.eta(step, total)
                )
            )

    head = train_head(
        feats,
        targets,
        hyper=hyper,
        seed=seed,
        on_step=on_step,
        init=None if parent is None else parent.head,
    )
    config = AdapterConfig(
        backbone=backbone.name,
        feature_dim=int(feats.shape[1]),
        hidden=hyper.hidden,
        shape=shape,
        patch_stride=backbone.patch_stride,
        base_model=base_model,
    )
    return AdapterExpert(backbone, head, config)


def _scored(maps: Sequence[AnomalyMap], examples: Sequence[MaskExample]) -> list[ScoredSample]:
    return [
        ScoredSample(
            anomaly_map=m.map,
            score=m.score,
            anomalous=e.sample.label == "anomalous",
            mask=e.mask,
            golden=e.sample.golden,
        )
        for m, e in zip(maps, examples, strict=True)
    ]


def evaluate_round(
    manifest: RoundManifest,
    backbone: Backbone,
    candidate: AdapterExpert,
    *,
    calibration: Sequence[np.ndarray],
    parent: AdapterExpert | None = None,
) -> dict[str, object]:
    """Held-out metrics of the current setup (before) and with the candidate (after)."""
    held = mask_examples(manifest.held_out)
    if not held:
        return {"before": {}, "after": {}, "promote": False, "reason": "no held-out images"}
    images = [e.image for e in held]
    expert = FewShotExpert(backbone, FewShotConfig(image_size=manifest.image_size))
    expert.fit([read_image(p) for p in manifest.references])
    base_maps = expert.predict(images)
    normals = list(calibration)
    base_normals = [m.map for m in expert.predict(normals)]
    candidate_maps = candidate.predict(images)
    after_scales = JoinScales.measure(base_normals, [m.map for m in candidate.predict(normals)])
    after_maps = [
        join_adapter(b, a, scales=after_scales)
        for b, a in zip(base_maps, candidate_maps, strict=True)
    ]
    if parent is not None:
        before_scales = JoinScales.measure(base_normals, [m.map for m in parent.predict(normals)])
        before_maps = [
            join_adapter(b, a, scales=before_scales)
            for b, a in zip(base_maps, parent.predict(images), strict=True)
        ]
    else:
        before_maps = [
            AnomalyMap(b.map / after_scales.base, b.score / after_scales.base, expert=b.expert)
            for b in base_maps
        ]
    before = held_out_metrics(_scored(before_maps, held))
    after = held_out_metrics(_scored(after_maps, held))
    return gated_result(before, after, manifest.extras.regression_tolerance) | {
        "base_scale": after_scales.base,
        "adapter_scale": after_scales.adapter,
    }


def run_adapter_round(
    manifest: RoundManifest, out: Path, *, device: str, emit: Emit
) -> dict[str, object]:
    """Train, save into ``out`` (a fresh folder) and evaluate; returns the metrics record."""
    check_feedback(manifest.train)
    hyper: AdapterHyperparameters = manifest.typed_hyperparameters()
    backbone = build_backbone(manifest.backbone, device=device)
    examples = mask_examples(manifest.train)
    parent_path = manifest.extras.parent
    parent = AdapterExpert.load(Path(parent_path), backbone) if parent_path else None
    candidate = fit_adapter(
        backbone,
        examples,
        image_size=manifest.image_size,
        hyper=hyper,
        seed=manifest.seed,
        base_model=manifest.base_model,
        emit=emit,
        parent=parent,
    )
    if not distributed.world().is_main:
        return {}  # rank 0 alone saves, judges and decides
    save_adapter(candidate.head, candidate.config, out)
    calibration = [e.image for e in examples if e.sample.label == "normal"][:CALIBRATION_IMAGES]
    if not manifest.references:
        return {"before": {}, "after": {}, "promote": False, "reason": "no references"}
    return evaluate_round(manifest, backbone, candidate, calibration=calibration, parent=parent)
