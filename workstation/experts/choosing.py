"""Running the fusion choice (``selection.py``) inside a pipeline's fit.

Builds the members -- one few-shot expert per candidate backbone, fitted once on the
shots and scored by cross-fitting, plus every trained expert the pipeline holds -- on
evidence made from the shots, and returns the choice with the fitted expert of the chosen
backbone, which the fit reuses instead of fitting it again when it saw every shot.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workstation.experts.base import Expert, build_backbone, installed_imagenet_backbones
from workstation.experts.features import resize_rgb, to_rgb_uint8, working_shape
from workstation.experts.fewshot import FewShotConfig, FewShotExpert
from workstation.experts.selection import (
    MAX_EVIDENCE_NORMALS,
    Evidence,
    FusionChoice,
    Member,
    build_evidence,
    choose_fusion,
    fold_of,
)

AUTO = "auto"
MAX_SELECTION_SHOTS = 48
"""Few-shot candidates are fitted on at most this many shots (evidence normals first)."""
BASE_SLOT = "fewshot"


NOT_AUTO = frozenset({"vgg16-hed"})
"""Installed backbones ``auto`` does not try: VGG16-HED costs 8x EfficientNet-Lite0 per
image and was best on no set measured (docs/benchmarks.md, ImageNet CNNs: below Lite0 on
the demo, below the filter bank on bsdata), so fitting it at every onboarding only adds
waiting. It stays available by name."""


PREFERENCE = ("efficientnet-lite2", "efficientnet-lite1", "efficientnet-lite0", "mobilenet-v2")
"""Order in which installed ImageNet backbones are tried, and so which one wins when the
evidence cannot tell them apart (its image AUROC on 8 normals carries a noise of 0.07-0.10,
wider than the backbones' real differences). Chosen by the development suite's *worst*
set (docs/benchmarks.md, "auto's order"): at 8 shots, seed 0, EfficientNet-Lite2 is at
most 0.016 image / 0.013 pixel AUROC below the best backbone on any of bsdata, KolektorSDD,
magnetic tile, DeepPCB and CrackForest, where Lite0 falls 0.061 / 0.042 behind (magnetic
tile), Lite1 0.055 (DeepPCB) and MobileNetV2 0.084 (DeepPCB). Backbones not listed follow
in the registry's order."""


def candidate_backbones(requested: str) -> tuple[str, ...]:
    """``auto``: the weight-free filter bank first (the reference the others must not fall
    below), then every installed ImageNet backbone but :data:`NOT_AUTO`, in the order of
    :data:`PREFERENCE` (new ones join by being installed, after the ranked ones)."""
    if requested != AUTO:
        return (requested,)
    installed = [b for b in installed_imagenet_backbones() if b not in NOT_AUTO]
    ranked = [b for b in PREFERENCE if b in installed]
    return ("filterbank", *ranked, *(b for b in installed if b not in ranked))


@dataclass
class ChoiceRun:
    choice: FusionChoice
    backbone: str
    fitted: FewShotExpert | None
    """The chosen backbone's expert, fitted on every shot (reusable), else None."""
    seconds: float


def _evidence_order(seen: Sequence[bool]) -> list[int]:
    """Shots to use as evidence normals: those no trained expert saw first, evenly spread."""
    unseen = [i for i, s in enumerate(seen) if not s]
    rest = [i for i, s in enumerate(seen) if s]
    picked: list[int] = []
    for pool in (unseen, rest):
        room = MAX_EVIDENCE_NORMALS - len(picked)
        if room <= 0:
            break
        spread = np.unique(np.linspace(0, len(pool) - 1, min(room, len(pool))).round())
        picked += [pool[int(i)] for i in spread] if pool else []
    return picked


def run_choice(
    normals: Sequence[np.ndarray],
    *,
    seen: Sequence[bool],
    backbone: str,
    fewshot: FewShotConfig,
    others: dict[str, Expert],
    probability: set[str],
    calibration: Sequence[int],
    anomalies: Sequence[tuple[np.ndarray, np.ndarray | None]] = (),
    device: str = "cpu",
    seed: int = 0,
) -> ChoiceRun | None:
    """Fit the candidates, score them on the evidence, choose (see the module docstring).

    None when no synthetic defect came out visible (e.g. blank normals) and no defect was
    confirmed: there is nothing to choose on, and the fit keeps the configured experts."""
    started = time.perf_counter()
    evidence_idx = _evidence_order(seen)
    if len(normals) <= MAX_SELECTION_SHOTS:
        fit_idx = list(range(len(normals)))
    else:
        spread = np.linspace(0, len(normals) - 1, MAX_SELECTION_SHOTS).round().astype(int)
        extra = [int(i) for i in spread if int(i) not in evidence_idx]
        fit_idx = sorted(evidence_idx + extra[: MAX_SELECTION_SHOTS - len(evidence_idx)])
    shape = working_shape(
        [im.shape[:2] for im in normals], image_size=fewshot.image_size, multiple=16
    )
    evidence = build_evidence(
        [resize_rgb(to_rgb_uint8(normals[i]), shape) for i in evidence_idx],
        evidence_idx,
        labelled=[(resize_rgb(to_rgb_uint8(im), shape), _mask(m, shape)) for im, m in anomalies],
        seed=seed,
    )
    if not evidence.anomalous.any():
        return None
    reusable = len(fit_idx) == len(normals)
    members: list[Member] = []
    experts: dict[str, FewShotExpert] = {}
    for name in candidate_backbones(backbone):
        expert = FewShotExpert(build_backbone(name, device=device), fewshot)
        expert.fit(
            [normals[i] for i in fit_idx], calibration=list(calibration) if reusable else None
        )
        experts[name] = expert
        members.append(_fewshot_member(name, expert, evidence, fit_idx))
    for slot, other in others.items():
        members.append(_trained_member(slot, other, evidence, seen, slot in probability))
    choice = choose_fusion(evidence, members)
    chosen = choice.options().get(BASE_SLOT, backbone)
    return ChoiceRun(
        choice=choice,
        backbone=chosen,
        fitted=experts[chosen] if reusable else None,
        seconds=time.perf_counter() - started,
    )


def _mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    import cv2

    small = (np.asarray(mask) > 0).astype(np.uint8)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def _fewshot_member(
    backbone: str, expert: FewShotExpert, evidence: Evidence, fit_idx: Sequence[int]
) -> Member:
    """Cross-fitting: each fold's rows against the bank less that fold's normals."""
    position = {shot: k for k, shot in enumerate(fit_idx)}
    normals = sorted({s for s in evidence.source if s >= 0})
    fold = {shot: fold_of(k, len(normals)) for k, shot in enumerate(normals)}
    count = len(evidence.images)
    maps: list[np.ndarray | None] = [None] * count
    scores = np.zeros(count)
    row_fold = [fold[s] if s >= 0 else -1 for s in evidence.source]
    for f in [*sorted(set(fold.values())), -1]:
        rows = [i for i, g in enumerate(row_fold) if g == f]
        if not rows:
            continue
        without = [position[s] for s, g in fold.items() if g == f] if f >= 0 else []
        held_out = expert.held_out_maps([evidence.images[i] for i in rows], without)
        for i, amap in zip(rows, held_out, strict=True):
            maps[i] = amap.map
            scores[i] = amap.score
    assert all(m is not None for m in maps), "every evidence row belongs to one fold"
    return Member(
        name=f"{BASE_SLOT}({backbone})",
        slot=BASE_SLOT,
        maps=[m for m in maps if m is not None],
        scores=scores,
        usable=np.ones(count, bool),
        option=backbone,
    )


def _trained_member(
    slot: str, expert: Expert, evidence: Evidence, seen: Sequence[bool], probability: bool
) -> Member:
    """A trained expert counts only on normals it did not train on (and their defects);
    labelled anomalies never count for it: it may have learned from them."""
    outputs = expert.predict(list(evidence.images))
    usable = np.asarray([s >= 0 and not seen[s] for s in evidence.source])
    return Member(
        name=slot,
        slot=slot,
        maps=[o.map for o in outputs],
        scores=np.asarray([o.score for o in outputs]),
        usable=usable,
        probability=probability,
    )
