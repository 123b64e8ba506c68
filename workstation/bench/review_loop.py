"""The simulated review loop behind ``bench active``: what an inspector experiences when a
strategy orders the queue, with the experts learning from each round as the app's do.

Once per dataset (:func:`prepare`): each image's backbone features at the few-shot
working shape (for the memory bank) and at the adapter's finer shape (for the learned
head), the head's mask targets, and the masks at the evaluation resolution.

Once per seed (:func:`split_for_seed`): ``shots`` normal references from ``train/good``
and a fixed evaluation part, half of every test label, that is never offered for review
(so every strategy is scored on the same images). The rest is the review pool.

Each round (:func:`simulate`): the experts score the pool and the evaluation part; the
strategy orders the unreviewed pool; the simulated inspector (the ground truth) reviews
the first ``budget`` images. Reviewed normals join the few-shot memory bank; reviewed
defects, with their masks, and all known normals train a new adapter head with the
product's training code (:func:`training.adapter_round.fit_adapter_features`); the
adapter joins the few-shot map as in the app. Recorded after each round: recall (pool
defects found so far, of all pool defects) and the fused map's image and pixel AUROC on
the evaluation part.

Two shortcuts, both exact or conservative: the bank is exact nearest-neighbour over every
reviewed normal patch (the app thins banks over 8,192 patches to a coreset), updated
incrementally because adding normals can only lower each distance; and each known
normal's calibration score is its leave-one-out distance, as the app calibrates its shots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from training.kinds.adapter import AdapterHyperparameters
    from workstation.core.types import AnomalyMap
    from workstation.experts.adapter import AdapterExpert
    from workstation.experts.base import Backbone
    from workstation.experts.fewshot import FewShotExpert

TARGET_FPR = 0.05
"""The product default: the threshold lets through 5 % of normals."""


@dataclass
class PreparedSet:
    """Features and masks of every image of a dataset, computed once (see module doc)."""

    paths: list[Path]
    labels: list[str]
    """``good`` or the defect type."""
    in_train: np.ndarray
    """True for ``train/good`` images (candidates for shots)."""
    image_size: int
    backbone: Backbone
    fewshot_shape: tuple[int, int]
    fewshot_raw: torch.Tensor
    """(N, h, w, C) raw backbone features at ``fewshot_shape``."""
    adapter_shape: tuple[int, int]
    adapter_features: torch.Tensor
    """(N, C, h', w') float16 features at ``adapter_shape``, as a training round caches."""
    targets: torch.Tensor
    """(N, 1, h', w') defect fraction per adapter cell (zeros for normals)."""
    defect_cells: np.ndarray
    """(N, h, w) bool: few-shot grid cells a defect mask touches."""
    eval_masks: list[np.ndarray]
    """Masks at ``fewshot_shape`` (a pixel is defective if any image pixel under it is)."""

    @property
    def anomalous(self) -> np.ndarray:
        return np.array([label != "good" for label in self.labels])

    def __len__(self) -> int:
        return len(self.paths)


def prepare(dataset: Path, *, image_size: int, hyper: AdapterHyperparameters) -> PreparedSet:
    import cv2
    import torch

    from training.adapter_round import adapter_targets
    from workstation.core.imageio import image_size as header_size
    from workstation.core.imageio import read_image, read_mask
    from workstation.datasets.mvtec import load_category
    from workstation.experts.adapter import adapter_shape, extract_features
    from workstation.experts.base import build_backbone
    from workstation.experts.features import resize_rgb, working_shape

    category = load_category(dataset)
    items = list(category.train) + list(category.test)
    backbone = build_backbone("filterbank")
    shapes = [header_size(item.path)[::-1] for item in items]
    multiple = int(getattr(backbone, "size_multiple", backbone.patch_stride))
    fewshot_shape = working_shape(shapes, image_size=image_size, multiple=multiple)
    head_shape = adapter_shape(backbone, shapes, round(image_size * hyper.detail))
    raw, head_feats, targets, cells, masks = [], [], [], [], []
    for start in range(0, len(items), 8):
        batch = items[start : start + 8]
        images = [read_image(item.path) for item in batch]
        image_masks = [
            read_mask(item.mask_path, expected_shape=im.shape[:2])
            if item.mask_path is not None
            else np.zeros(im.shape[:2], np.uint8)
            for item, im in zip(batch, images, strict=True)
        ]
        with torch.inference_mode():
            feats = backbone.features([resize_rgb(im, fewshot_shape) for im in images])
        raw.append(feats.float().permute(0, 2, 3, 1).contiguous())
        head_feats.append(extract_features(backbone, images, shape=head_shape, dtype=torch.float16))
        head_grid = (head_feats[-1].shape[2], head_feats[-1].shape[3])
        targets.append(adapter_targets(image_masks, head_grid))
        grid = (raw[-1].shape[1], raw[-1].shape[2])
        for mask in image_masks:
            area = mask.astype(np.float32)
            cells.append(cv2.resize(area, grid[::-1], interpolation=cv2.INTER_AREA) > 0)
            masks.append(cv2.resize(area, fewshot_shape[::-1], interpolation=cv2.INTER_AREA) > 0)
    return PreparedSet(
        paths=[item.path for item in items],
        labels=[item.label for item in items],
        in_train=np.array([i < len(category.train) for i in range(len(items))]),
        image_size=image_size,
        backbone=backbone,
        fewshot_shape=fewshot_shape,
        fewshot_raw=torch.cat(raw),
        adapter_shape=head_shape,
        adapter_features=torch.cat(head_feats),
        targets=torch.cat(targets),
        defect_cells=np.stack(cells),
        eval_masks=masks,
    )


@dataclass(frozen=True)
class Split:
    shots: list[int]
    pool: list[int]
    evaluation: list[int]


def split_for_seed(prepared: PreparedSet, *, shots: int, seed: int) -> Split:
    """Shots from train/good; half of every test label (rounded down) held out for scoring."""
    from workstation.core.errors import UserError

    rng = np.random.default_rng(seed)
    train = np.flatnonzero(prepared.in_train)
    if len(train) <= shots:
        raise UserError(f"{len(train)} normal training images; the simulation needs > {shots}")
    chosen = sorted(int(i) for i in rng.choice(train, size=shots, replace=False))
    evaluation: list[int] = []
    test = np.flatnonzero(~prepared.in_train)
    labels = np.asarray(prepared.labels)
    for label in sorted(set(labels[test])):
        members = rng.permutation(test[labels[test] == label])
        evaluation += [int(i) for i in members[: len(members) // 2]]
    anomalous = prepared.anomalous
    if anomalous[evaluation].all() or not anomalous[evaluation].any():
        raise UserError("the test images need at least two normals and two defects")
    taken = set(chosen) | set(evaluation)
    pool = [i for i in range(len(prepared)) if i not in taken]
    return Split(shots=chosen, pool=pool, evaluation=sorted(evaluation))


class GrowingBank:
    """Nearest-neighbour distance of every patch of every image to the known normals.

    A known normal's own patches are never compared with themselves, so its distances are
    leave-one-out: what calibration needs. Adding normals only lowers distances, so each
    addition costs one pass of the new patches against all images.
    """

    def __init__(self, patches: torch.Tensor) -> None:
        import torch

        self.patches = patches
        """(N, h, w, C) normalised features."""
        count = patches.shape[0]
        self._rows = patches.reshape(count, -1, patches.shape[-1])
        self.distances = torch.full(self._rows.shape[:2], float("inf"))
        self.members: list[int] = []

    def copy(self) -> GrowingBank:
        other = GrowingBank.__new__(GrowingBank)
        other.patches, other._rows = self.patches, self._rows
        other.distances = self.distances.clone()
        other.members = list(self.members)
        return other

    def add(self, image_ids: Sequence[int]) -> None:
        import torch

        from workstation.experts.patch_knn import nearest_distances

        ids = [int(i) for i in image_ids if int(i) not in self.members]
        if not ids:
            return
        channels = self._rows.shape[-1]
        outside = torch.ones(self._rows.shape[0], dtype=torch.bool)
        outside[ids] = False
        bank = self._rows[ids].reshape(-1, channels)
        fresh = nearest_distances(self._rows[outside].reshape(-1, channels), bank, knn=1)
        self.distances[outside] = torch.minimum(
            self.distances[outside], fresh.reshape(-1, self._rows.shape[1])
        )
        for i in ids:  # each new member against the other new ones only
            others = [j for j in ids if j != i]
            if others:
                rest = self._rows[others].reshape(-1, channels)
                own = nearest_distances(self._rows[i], rest, knn=1)
                self.distances[i] = torch.minimum(self.distances[i], own)
        self.members += ids

    def grids(self, image_ids: Sequence[int]) -> np.ndarray:
        h, w = self.patches.shape[1:3]
        return self.distances[list(image_ids)].reshape(-1, h, w).numpy()


@dataclass
class Scored:
    """The experts' view after one round: fused scores, threshold, maps of what matters."""

    scores: np.ndarray
    """Fused score of every image (index = image id)."""
    threshold: float
    expert_scores: dict[str, np.ndarray]
    """Per expert, the score of every image."""
    fewshot_grids: np.ndarray
    """(N, h, w) few-shot patch distances (where each image looks most anomalous)."""
    eval_maps: list[np.ndarray]
    """Fused maps of the evaluation images at ``fewshot_shape``."""


def _fewshot_maps(
    expert: FewShotExpert, grids: np.ndarray, shape: tuple[int, int]
) -> list[AnomalyMap]:
    return [expert.grid_map(grid, shape) for grid in grids]


def _grid_sized(amap: AnomalyMap, shape: tuple[int, int]) -> AnomalyMap:
    """The map at the few-shot grid's shape (area-averaged), score unchanged."""
    import cv2

    from workstation.core.types import AnomalyMap

    if amap.map.shape == shape:
        return amap
    small = cv2.resize(amap.map, shape[::-1], interpolation=cv2.INTER_AREA)
    return AnomalyMap(map=small, score=amap.score, expert=amap.expert)


def score_round(
    prepared: PreparedSet,
    expert: FewShotExpert,
    bank: GrowingBank,
    adapter: AdapterExpert | None,
    evaluation: Sequence[int],
) -> Scored:
    """Few-shot (and, once trained, adapter) maps of every image, joined as the app does."""
    from workstation.experts.adapter import JoinScales, join_adapter
    from workstation.experts.fusion import choose_threshold

    count = len(prepared)
    grids = bank.grids(range(count))
    grid_shape = grids.shape[1:]
    base = _fewshot_maps(expert, grids, grid_shape)
    base_eval = _fewshot_maps(expert, grids[list(evaluation)], prepared.fewshot_shape)
    normals = bank.members
    expert_scores = {"fewshot": np.array([m.score for m in base])}
    if adapter is None:
        fused, fused_eval = base, base_eval
    else:
        # One pass of the head: maps at the evaluation size where they are measured
        # (evaluation images, and known normals for the join's scale), else at the grid.
        fine = set(evaluation) | set(normals)
        sizes = [prepared.fewshot_shape if i in fine else grid_shape for i in range(count)]
        own = adapter.predict_features(prepared.adapter_features, sizes)
        own_eval = [own[i] for i in evaluation]
        base_normal = _fewshot_maps(expert, grids[normals], prepared.fewshot_shape)
        scales = JoinScales.measure([m.map for m in base_normal], [own[i].map for i in normals])
        fused_eval = [
            join_adapter(b, a, scales=scales) for b, a in zip(base_eval, own_eval, strict=True)
        ]
        # Scores only for the rest: the join is linear in the scores as in the maps.
        fused = [
            join_adapter(b, _grid_sized(a, grid_shape), scales=scales)
            for b, a in zip(base, own, strict=True)
        ]
        expert_scores["adapter"] = np.array([m.score for m in own])
    scores = np.array([m.score for m in fused])
    threshold = choose_threshold(scores[normals], TARGET_FPR).raw
    return Scored(
        scores=scores,
        threshold=threshold,
        expert_scores=expert_scores,
        fewshot_grids=grids,
        eval_maps=[m.map for m in fused_eval],
    )


@dataclass
class SeedState:
    """What every strategy starts from on one seed: the fitted shots, nothing reviewed."""

    split: Split
    expert: FewShotExpert
    bank: GrowingBank
    embeddings: np.ndarray
    """Per image, what the few-shot expert attaches to its map (``image_embedding``)."""


def seed_state(prepared: PreparedSet, split: Split) -> SeedState:
    from workstation.core.imageio import read_image
    from workstation.experts.fewshot import FewShotConfig, FewShotExpert, image_embedding

    expert = FewShotExpert(prepared.backbone, FewShotConfig(image_size=prepared.image_size))
    expert.fit([read_image(prepared.paths[i]) for i in split.shots])
    if expert.shape != prepared.fewshot_shape:
        raise RuntimeError(f"shots fitted at {expert.shape}, features at {prepared.fewshot_shape}")
    patches = expert.normalise(prepared.fewshot_raw)
    bank = GrowingBank(patches)
    bank.add(split.shots)
    embeddings = np.stack([image_embedding(p) for p in patches])
    return SeedState(split=split, expert=expert, bank=bank, embeddings=embeddings)


@dataclass
class Run:
    """One strategy on one seed, round by round (round 0 = before any review)."""

    strategy: str
    seed: int
    reviews: list[int] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    image_auroc: list[float] = field(default_factory=list)
    pixel_auroc: list[float] = field(default_factory=list)
    picked: list[list[int]] = field(default_factory=list)
    """Image ids reviewed in each round."""
    reasons: list[list[str]] = field(default_factory=list)
    """Why the strategy put each of them first (``strategies.REASONS`` keys)."""
    found: list[list[bool]] = field(default_factory=list)
    """Which of them were defects."""

    def area(self, name: str) -> float:
        """Mean height of a curve over rounds 0..R (trapezoid): 1.0 is perfect throughout."""
        values = np.asarray(getattr(self, name), dtype=np.float64)
        return float(np.trapezoid(values) / max(1, values.size - 1))


REGION_CELLS = 4
"""Cells averaged into an image's region descriptor: its most anomalous few."""


def region_descriptors(
    patches: torch.Tensor, weights: np.ndarray, image_ids: Sequence[int]
) -> np.ndarray:
    """Mean normalised patch feature over each image's region: its top ``REGION_CELLS``
    cells by ``weights`` (a map at the patch grid; a painted mask counts its cells)."""
    channels = patches.shape[-1]
    out = np.zeros((len(image_ids), channels))
    for row, (image, weight) in enumerate(zip(image_ids, weights, strict=True)):
        flat = weight.reshape(-1).astype(np.float64)
        take = max(REGION_CELLS, int((flat > 0).sum())) if weight.dtype == bool else REGION_CELLS
        top = np.argsort(-flat, kind="stable")[:take]
        out[row] = patches[image].reshape(-1, channels)[top].mean(0).numpy()
    return out


def train_adapter(
    prepared: PreparedSet,
    normals: Sequence[int],
    defects: Sequence[int],
    *,
    hyper: AdapterHyperparameters,
    seed: int,
) -> AdapterExpert | None:
    """A head trained on every known normal and every reviewed defect, or None before the
    first defect (the app refuses such a round too)."""
    from training.adapter_round import fit_adapter_features

    if not defects or not normals:
        return None
    ids = list(normals) + list(defects)
    return fit_adapter_features(
        prepared.backbone,
        prepared.adapter_features[ids],
        prepared.targets[ids],
        shape=prepared.adapter_shape,
        hyper=hyper,
        seed=seed,
    )


def simulate(
    prepared: PreparedSet,
    state: SeedState,
    strategy: str,
    *,
    budget: int,
    rounds: int,
    hyper: AdapterHyperparameters,
    seed: int,
) -> Run:
    from workstation.active.strategies import Candidates, review_order
    from workstation.core.metrics import auroc, pixel_auroc

    split = state.split
    anomalous = prepared.anomalous
    pool_defects = max(1, int(anomalous[split.pool].sum()))
    eval_masks = [prepared.eval_masks[i] for i in split.evaluation]
    bank = state.bank.copy()
    unreviewed = list(split.pool)
    reviewed: list[int] = []
    defects: list[int] = []
    adapter = None
    run = Run(strategy, seed)
    for round_index in range(rounds + 1):
        scored = score_round(prepared, state.expert, bank, adapter, split.evaluation)
        run.reviews.append(len(reviewed))
        run.recall.append(len(defects) / pool_defects)
        run.image_auroc.append(auroc(anomalous[split.evaluation], scored.scores[split.evaluation]))
        run.pixel_auroc.append(pixel_auroc(scored.eval_maps, eval_masks))
        if round_index == rounds or not unreviewed:
            break
        scores = scored.scores[unreviewed]
        candidates = Candidates(
            scores=scores,
            threshold=scored.threshold,
            embeddings=state.embeddings[unreviewed],
            reviewed_embeddings=state.embeddings[split.shots + reviewed],
            expert_scores={n: v[unreviewed] for n, v in scored.expert_scores.items()},
            defect_descriptors=region_descriptors(
                bank.patches, scored.fewshot_grids[unreviewed], unreviewed
            ),
            reviewed_defect_descriptors=region_descriptors(
                bank.patches, prepared.defect_cells[defects], defects
            ),
        )
        ordered = review_order(strategy, candidates, budget=budget, seed=seed * 1000 + round_index)
        chosen = ordered.order[:budget]
        picked = [unreviewed[i] for i in chosen]
        run.reasons.append([ordered.reasons[i] for i in chosen])
        run.picked.append(picked)
        reviewed += picked
        run.found.append([bool(anomalous[i]) for i in picked])
        found = [i for i in picked if anomalous[i]]
        defects += found
        bank.add([i for i in picked if not anomalous[i]])
        if found or adapter is not None:
            adapter = train_adapter(prepared, bank.members, defects, hyper=hyper, seed=seed)
        taken = set(picked)
        unreviewed = [i for i in unreviewed if i not in taken]
    return run
