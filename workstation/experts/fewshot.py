"""Few-shot expert: a memory bank of normal patch features and nearest-neighbour distance.

The PatchCore / AnomalyDINO recipe: every patch of every normal shot goes into a bank
(optionally with flipped / rotated copies, so a few shots cover more appearance), the bank
is thinned by greedy k-centre coreset selection to a memory budget, and a test patch is as
anomalous as its distance to the nearest normal patch. The image score is the mean of the
top ``top_percent`` % patch scores (robust to a single noisy patch, still sensitive to small
defects); the map is the patch-score grid upsampled and smoothed to the image size.

``position_aware`` is for products always imaged in the same pose: a test patch is only
compared with bank patches from a small window around the same grid position, so a part
that is normal in one place but misplaced in another is caught.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from workstation.core.errors import UserError
from workstation.core.types import AnomalyMap
from workstation.experts.base import Backbone, ProgressFn, StageFn
from workstation.experts.features import (
    check_min_size,
    grid_to_map,
    resize_rgb,
    to_rgb_uint8,
    working_shape,
)

if TYPE_CHECKING:
    import torch

FeatureNorm = Literal["auto", "none", "l2", "standardize", "whiten"]


@dataclass(frozen=True)
class FewShotConfig:
    image_size: int = 512
    """Working resolution: images are resized to about ``image_size**2`` pixels."""
    memory_budget: int = 20000
    """Largest bank (patches) kept after coreset selection; 0 keeps everything."""
    coreset_ratio: float = 0.1
    """Fraction of patches kept once the bank exceeds ``coreset_floor`` (PatchCore: 10 %)."""
    coreset_floor: int = 8192
    """Banks up to this size are kept whole: few shots need every patch (AnomalyDINO)."""
    augment: bool = False
    """Add flipped (and, for square working shapes, 90-degree rotated) references."""
    top_percent: float = 1.0
    knn: int = 1
    """Distance to the mean of the ``knn`` nearest bank patches (1 = PatchCore)."""
    position_aware: bool = False
    position_radius: int = 2
    """Grid cells searched around the same position when ``position_aware``."""
    feature_norm: FeatureNorm = "auto"
    """auto = the backbone's ``feature_norm`` attribute, else l2 (cosine, AnomalyDINO)."""
    smoothing: float = 0.5
    """Map smoothing sigma in patch strides (PatchCore: sigma 4 px at stride 8)."""
    projection_dim: int = 128
    """Random projection size used only to choose the coreset faster."""
    batch_size: int = 8
    seed: int = 0

    def bank_size(self, patches: int) -> int:
        """Rows kept from ``patches``: all when few, else the coreset share, within budget."""
        keep = max(self.coreset_floor, math.ceil(self.coreset_ratio * patches))
        if self.memory_budget:
            keep = min(keep, self.memory_budget)
        return min(keep, patches)

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise UserError("image_size must be at least 32 pixels")
        if self.memory_budget < 0:
            raise UserError("memory_budget must be >= 0 (0 keeps every patch)")
        if not 0 < self.top_percent <= 100:
            raise UserError("top_percent must be in (0, 100]")
        if not 0 < self.coreset_ratio <= 1 or self.coreset_floor < 1:
            raise UserError("coreset_ratio must be in (0, 1] and coreset_floor >= 1")
        if self.knn < 1 or self.position_radius < 0 or self.batch_size < 1:
            raise UserError("knn and batch_size must be >= 1, position_radius >= 0")
        if self.feature_norm not in ("auto", "none", "l2", "standardize", "whiten"):
            raise UserError(f"unknown feature_norm {self.feature_norm!r}")


def top_percent_mean(values: np.ndarray, percent: float) -> float:
    flat = np.sort(values.ravel())
    count = max(1, math.ceil(flat.size * percent / 100.0))
    return float(flat[-count:].mean())


CORESET_STEPS = 512
"""Greedy coreset selection runs in at most about this many batched steps."""
CORESET_ROWS = 262144
"""Rows per block in each coreset step: bounds the distance buffer's memory."""
MOMENT_ROWS = 16384
"""Rows per float64 block when computing normalisation statistics."""


def greedy_coreset(
    features: torch.Tensor,
    budget: int,
    *,
    projection_dim: int,
    seed: int,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Indices of ``budget`` rows chosen by greedy k-centre (farthest-point) selection.

    Distances are measured after a Johnson-Lindenstrauss random projection when the
    features are wider than ``projection_dim``, which preserves them well enough for
    choosing centres. Exact greedy costs ``budget`` sequential passes over all rows;
    here each step takes the ``budget / CORESET_STEPS`` currently farthest rows at once
    (one matrix product per step), which keeps fitting a 16-shot bank to about a second
    and behaves like exact greedy when the budget is small (one row per step).
    """
    import torch

    count = features.shape[0]
    if budget >= count:
        return torch.arange(count, device=features.device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    points = features
    if features.shape[1] > projection_dim:
        projection = torch.randn(
            features.shape[1], projection_dim, generator=generator
        ).to(features.device) / math.sqrt(projection_dim)
        points = features @ projection
    # Squared norms per row block: ``points * points`` at once would copy the whole pool.
    norms = torch.cat([(block * block).sum(1) for block in points.split(MOMENT_ROWS)])
    min_dist = torch.full((count,), float("inf"), device=features.device)
    newest = torch.randint(count, (1,), generator=generator).to(features.device)
    chosen = [newest]
    selected = 1
    per_step = max(1, math.ceil(budget / CORESET_STEPS))
    rows = min(count, CORESET_ROWS)
    # Buffers reused every step and row block: hundreds of equal-sized temporaries
    # otherwise fragment the C heap, and one (count x per_step) block costs as much
    # memory as a large bank itself.
    buffer = torch.empty((rows, per_step), device=features.device)
    nearest = torch.empty(rows, device=features.device)
    where = torch.empty(rows, dtype=torch.long, device=features.device)
    while selected < budget:
        centres_t = points[newest].T.contiguous()
        centre_norms = norms[newest][None, :]
        for start in range(0, count, rows):
            stop = min(start + rows, count)
            out = buffer[: stop - start, : len(newest)]
            # ||c||^2 - 2 p.c for the newest centres in one fused product; ||p||^2 after.
            torch.addmm(centre_norms, points[start:stop], centres_t, alpha=-2.0, out=out)
            torch.min(out, 1, out=(nearest[: stop - start], where[: stop - start]))
            block = nearest[: stop - start]
            block += norms[start:stop]
            torch.minimum(min_dist[start:stop], block, out=min_dist[start:stop])
        take = min(per_step, budget - selected)
        newest = torch.topk(min_dist, take).indices
        chosen.append(newest)
        selected += take
        if progress:
            progress(selected, budget)
    return torch.cat(chosen)


def nearest_distances(
    queries: torch.Tensor,
    bank: torch.Tensor,
    *,
    knn: int,
    query_chunk: int = 1024,
    bank_chunk: int = 256,
) -> torch.Tensor:
    """Mean Euclidean distance of each query row to its ``knn`` nearest bank rows.

    Why blocks: patch features are narrow (tens of channels), so the product
    ``queries @ bank.T`` is bound by writing its (queries x bank) output, not by
    arithmetic. Small query x bank blocks written into one reused buffer stay in cache and
    run about four times faster than one big product on a CPU; a running minimum (or
    running top-k) keeps the answer exact.
    """
    import torch

    bank_norms = (bank * bank).sum(1)
    count = bank.shape[0]
    k = min(knn, count)
    out = torch.empty(queries.shape[0], device=queries.device, dtype=queries.dtype)
    buffer = torch.empty(
        (min(query_chunk, queries.shape[0]), min(bank_chunk, count)),
        device=queries.device,
        dtype=queries.dtype,
    )
    for q_start in range(0, queries.shape[0], query_chunk):
        block = queries[q_start : q_start + query_chunk]
        best: torch.Tensor | None = None
        for b_start in range(0, count, bank_chunk):
            part = bank[b_start : b_start + bank_chunk]
            partial = buffer[: block.shape[0], : part.shape[0]]
            # ||b||^2 - 2 q.b in one fused product; ||q||^2 is constant per row, added last.
            torch.addmm(
                bank_norms[b_start : b_start + bank_chunk][None, :],
                block,
                part.T,
                alpha=-2.0,
                out=partial,
            )
            if k == 1:
                smallest = partial.amin(1, keepdim=True)
                best = smallest if best is None else torch.minimum(best, smallest)
                continue
            smallest = torch.topk(partial, min(k, part.shape[0]), dim=1, largest=False).values
            best = smallest if best is None else torch.cat([best, smallest], 1)
            if best.shape[1] > k:
                best = torch.topk(best, k, dim=1, largest=False).values
        assert best is not None
        squared = best + (block * block).sum(1, keepdim=True)
        out[q_start : q_start + block.shape[0]] = squared.clamp_min(0).sqrt().mean(1)
    return out


def image_embedding(features: torch.Tensor) -> np.ndarray:
    """One image's (h, w, C) normalised patch features -> mean and spread of each channel.

    Images alike in texture, colour and structure land close together, whatever their
    anomaly scores: the review queue's coverage (``active.strategies``) uses it to find
    what nothing reviewed resembles yet.
    """
    import torch

    flat = features.reshape(-1, features.shape[-1]).float()
    spread = flat.std(0) if flat.shape[0] > 1 else torch.zeros_like(flat[0])
    return torch.cat([flat.mean(0), spread]).cpu().numpy().astype(np.float32)


def _augmentations(image: np.ndarray, square: bool) -> list[np.ndarray]:
    variants = [image, image[:, ::-1], image[::-1, :], image[::-1, ::-1]]
    if square:
        rotated = np.rot90(image)
        variants += [rotated, rotated[::-1, ::-1]]
    return [np.ascontiguousarray(v) for v in variants]


MAX_CALIBRATION_SHOTS = 32
"""Leave-one-out calibration scores at most this many shots (evenly spread)."""


def calibration_indices(count: int) -> list[int]:
    """Which of ``count`` normal shots are scored for calibration (all, up to the cap)."""
    if count <= 0:
        return []
    spread = np.linspace(0, count - 1, min(count, MAX_CALIBRATION_SHOTS)).round()
    return [int(i) for i in np.unique(spread)]


class FewShotExpert:
    """Patch kNN against a bank of normal patches (see module docstring)."""

    def __init__(self, backbone: Backbone, config: FewShotConfig | None = None) -> None:
        self.backbone = backbone
        self.config = config or FewShotConfig()
        self.name = "fewshot"
        self.norm: str = self._resolve_norm()
        self.shape: tuple[int, int] | None = None
        self.bank: torch.Tensor | None = None
        self.bank_owner: torch.Tensor | None = None
        """Shot index of every bank row (flipped copies share their shot's index)."""
        self.mean: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None
        self._held_out: list[tuple[int, torch.Tensor, tuple[int, int]]] = []
        self._single_shot: np.ndarray | None = None

    def _resolve_norm(self) -> str:
        if self.config.feature_norm != "auto":
            return self.config.feature_norm
        return str(getattr(self.backbone, "feature_norm", "l2"))

    @property
    def fitted(self) -> bool:
        return self.bank is not None

    # --- features ---------------------------------------------------------------------

    def _prepare(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        prepared = []
        for image in images:
            rgb = to_rgb_uint8(image)
            check_min_size(rgb, self.backbone.patch_stride)
            prepared.append(rgb)
        return prepared

    def _features(
        self, images: Sequence[np.ndarray], progress: Callable[[int], None] | None = None
    ) -> torch.Tensor:
        """Raw (N, h, w, C) features; images are resized to the working shape."""
        import torch

        assert self.shape is not None
        size = self.config.batch_size
        out: torch.Tensor | None = None
        for start in range(0, len(images), size):
            batch = [resize_rgb(im, self.shape) for im in images[start : start + size]]
            with torch.inference_mode():
                feats = self.backbone.features(batch).float()
                if not torch.isfinite(feats).all():
                    raise UserError(
                        f"the {self.backbone.name} backbone produced NaN or infinite "
                        "features; the model weights may be corrupt or the image unreadable"
                    )
                if out is None:
                    # One allocation for all images: a list of parts joined by torch.cat
                    # would hold every feature twice at the peak (the bank-memory target).
                    _, channels, h, w = feats.shape
                    out = torch.empty((len(images), h, w, channels), device=feats.device)
                out[start : start + len(batch)] = feats.permute(0, 2, 3, 1)
            if progress:
                progress(min(start + size, len(images)))
        assert out is not None
        return out

    def _normalise(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalise fresh features, in place where the norm allows (bank memory)."""
        import torch

        with torch.inference_mode():
            if self.norm == "l2":
                return feats.div_(feats.norm(dim=-1, keepdim=True).clamp_min_(1e-12))
            if self.norm == "standardize":
                assert self.mean is not None and self.scale is not None
                return feats.sub_(self.mean).div_(self.scale)
            if self.norm == "whiten":
                assert self.mean is not None and self.scale is not None
                return feats.sub_(self.mean) @ self.scale
        return feats

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw ``(N, h, w, C)`` backbone features at ``self.shape`` in the bank's space.

        For callers that extract features once and reuse them across many fits (the
        active-learning simulation): returns a normalised copy, ``raw`` is left as it was.
        """
        if not self.fitted:
            raise UserError("the few-shot expert has not been fitted on normal images yet")
        return self._normalise(raw.clone())

    def _set_standardisation(self, raw: torch.Tensor) -> None:
        import torch

        flat = raw.reshape(-1, raw.shape[-1])
        # Moments in float64 over row blocks: no full-size temporary, no float32 drift.
        total = torch.zeros(flat.shape[1], dtype=torch.float64, device=flat.device)
        squares = torch.zeros_like(total)
        for start in range(0, flat.shape[0], MOMENT_ROWS):
            block = flat[start : start + MOMENT_ROWS].double()
            total += block.sum(0)
            squares += (block * block).sum(0)
        rows = flat.shape[0]
        mean64 = total / rows
        var = (squares - rows * mean64 * mean64).clamp_min(0) / max(rows - 1, 1)
        self.mean = mean64.float()
        std = var.sqrt().float() if rows > 1 else torch.ones_like(self.mean)
        # A channel that never varies on normals (e.g. colour on gray parts) would blow
        # up any tiny change; floor its scale at a fraction of the typical channel's.
        self.scale = torch.clamp(std, min=float(std.median()) * 1e-2 + 1e-6)
        if self.norm == "whiten":
            # Mahalanobis distance on the normal patches' covariance (PaDiM-style), with
            # shrinkage towards the diagonal so few shots still give a stable inverse.
            cov = torch.zeros((flat.shape[1],) * 2, dtype=torch.float64, device=flat.device)
            for start in range(0, rows, MOMENT_ROWS):
                z = ((flat[start : start + MOMENT_ROWS] - self.mean) / self.scale).double()
                cov += z.T @ z
            cov = (cov / max(rows - 1, 1)).float()
            eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
            cov = 0.9 * cov + 0.1 * eye
            values, vectors = torch.linalg.eigh(cov)
            inv_sqrt = vectors @ torch.diag(values.clamp_min(1e-4).rsqrt()) @ vectors.T
            self.scale = torch.diag(1.0 / self.scale) @ inv_sqrt

    # --- the Expert protocol ----------------------------------------------------------

    def fit(
        self,
        normals: Sequence[np.ndarray],
        *,
        progress: ProgressFn | None = None,
        calibration: Sequence[int] | None = None,
        stages: StageFn | None = None,
    ) -> None:
        """Build the bank; ``calibration`` picks the shots that ``calibration_maps`` scores
        leave-one-out (default: up to MAX_CALIBRATION_SHOTS spread over all of them).
        ``stages`` hears the features and the memory-bank selection separately."""
        import torch

        if len(normals) == 0:
            raise UserError(
                "the few-shot expert needs at least one normal image; mark some images "
                "of this product as good (train/good) first"
            )
        images = self._prepare(normals)
        multiple = int(getattr(self.backbone, "size_multiple", self.backbone.patch_stride))
        self.shape = working_shape(
            [im.shape[:2] for im in images], image_size=self.config.image_size, multiple=multiple
        )
        square = self.shape[0] == self.shape[1]
        references: list[np.ndarray] = []
        owners: list[int] = []
        for index, image in enumerate(images):
            resized = resize_rgb(image, self.shape)
            variants = _augmentations(resized, square) if self.config.augment else [resized]
            references += variants
            owners += [index] * len(variants)
        total = len(references) + 1

        def report(done: int) -> None:
            if progress:
                progress(done, total)
            if stages:
                stages(done, len(references), "features")

        raw = self._features(references, report)  # (N, h, w, C)
        if self.norm in ("standardize", "whiten"):
            self._set_standardisation(raw)
        feats = self._normalise(raw)
        del raw
        owner = torch.tensor(owners, device=feats.device)
        chosen = calibration_indices(len(images)) if calibration is None else list(calibration)
        self._remember_held_out(images, feats, owners, chosen)
        if self.config.position_aware:
            self.bank = feats  # (N, h, w, C): kept whole, searched per position
            self.bank_owner = owner
        else:
            cells = feats.shape[1] * feats.shape[2]
            flat = feats.reshape(-1, feats.shape[-1])
            flat_owner = owner.repeat_interleave(cells)
            budget = self.config.bank_size(flat.shape[0])
            if flat.shape[0] > budget:
                keep = greedy_coreset(
                    flat,
                    budget,
                    projection_dim=self.config.projection_dim,
                    seed=self.config.seed,
                    progress=(lambda d, t: stages(d, t, "memory bank")) if stages else None,
                )
                flat, flat_owner = flat[keep], flat_owner[keep]
            self.bank = flat.contiguous()
            self.bank_owner = flat_owner
        if progress:
            progress(total, total)

    def _remember_held_out(
        self,
        images: Sequence[np.ndarray],
        feats: torch.Tensor,
        owners: list[int],
        chosen: Sequence[int],
    ) -> None:
        """Keep features of the ``chosen`` shots for leave-one-out scoring."""
        assert self.shape is not None
        first_row = {owner: row for row, owner in reversed(list(enumerate(owners)))}
        self._held_out = [(i, feats[first_row[i]].clone(), images[i].shape[:2]) for i in chosen]
        single = len(images) == 1
        self._single_shot = resize_rgb(images[0], self.shape) if single else None

    def calibration_maps(self, stages: StageFn | None = None) -> list[AnomalyMap]:
        """Maps of the normal shots, each scored against a bank without that shot.

        These are what calibration must use: a shot scored against a bank that holds its
        own patches scores ~0 and would make any threshold far too low. With one shot
        there is nobody to leave out, so the shot is scored against its flipped copies
        only: an approximation that over-states normal variation for asymmetric parts,
        i.e. errs towards fewer false alarms. Frees the held-out features afterwards.
        """
        if not self.fitted:
            raise UserError("the few-shot expert has not been fitted on normal images yet")
        assert self.bank is not None and self.bank_owner is not None
        maps = []
        for shot, feats, shape in self._held_out:
            if self._single_shot is not None:
                flips = _augmentations(self._single_shot, square=False)[1:]
                bank = self._normalise(self._features(flips))
                if not self.config.position_aware:
                    bank = bank.reshape(-1, bank.shape[-1])
            else:
                bank = self.bank[self.bank_owner != shot]
            grid = self._grid_scores(feats, bank).cpu().numpy()
            maps.append(self.grid_map(grid, shape))
            if stages:
                stages(len(maps), len(self._held_out), "calibration")
        self._held_out = []
        self._single_shot = None
        return maps

    def _grid_scores(self, feats: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        """(h, w) patch scores for one image's normalised (h, w, C) features."""
        h, w, channels = feats.shape
        if not self.config.position_aware:
            return nearest_distances(
                feats.reshape(-1, channels), bank, knn=self.config.knn
            ).reshape(h, w)
        return self._positional_scores(feats, bank)

    def _positional_scores(self, feats: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        radius = self.config.position_radius
        h, w, _ = feats.shape
        # Bank patches within +-radius cells of a position are its candidates: one shifted
        # view of the bank per offset, so memory stays at one bank-sized temporary.
        padded = F.pad(bank.permute(0, 3, 1, 2), (radius,) * 4, mode="replicate")
        query = feats.permute(2, 0, 1)[None]  # (1, C, h, w)
        window = 2 * radius + 1
        dists = [
            ((padded[:, :, dy : dy + h, dx : dx + w] - query) ** 2).sum(1)
            for dy in range(window)
            for dx in range(window)
        ]
        dist = torch.cat(dists, 0)  # (offsets * N, h, w)
        k = min(self.config.knn, dist.shape[0])
        nearest = torch.topk(dist, k, dim=0, largest=False).values
        return nearest.clamp_min(0).sqrt().mean(0)

    def _grids(
        self, prepared: Sequence[np.ndarray], bank: torch.Tensor | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Patch-score grids and image embeddings, from one feature pass per batch."""
        if not self.fitted:
            raise UserError("the few-shot expert has not been fitted on normal images yet")
        assert self.bank is not None
        bank = self.bank if bank is None else bank
        grids: list[np.ndarray] = []
        embeddings: list[np.ndarray] = []
        size = self.config.batch_size
        for start in range(0, len(prepared), size):
            batch = prepared[start : start + size]
            for image, one in zip(batch, self._normalise(self._features(batch)), strict=True):
                grids.append(self._image_grid(image, one, bank).cpu().numpy())
                embeddings.append(image_embedding(one))
        return grids, embeddings

    def _image_grid(
        self, image: np.ndarray, feats: torch.Tensor, bank: torch.Tensor
    ) -> torch.Tensor:
        """One prepared image's (h, w) patch scores from its normalised features: the
        distance to ``bank`` here; the pool expert (pool.py) also asks the other images."""
        return self._grid_scores(feats, bank)

    def held_out_maps(
        self, images: Sequence[np.ndarray], without: Sequence[int]
    ) -> list[AnomalyMap]:
        """Maps of ``images`` scored against the bank less every row of the shots
        ``without`` (indices into the fitted normals): cross-fitting without a refit.

        The evidence of the fusion choice uses it: a defect pasted onto a shot must not be
        compared with that shot's own patches. The coreset was chosen with those shots in
        the pool, so the reduced bank is, if anything, sparser than a refit's (pessimistic).
        """
        import torch

        if not self.fitted:
            raise UserError("the few-shot expert has not been fitted on normal images yet")
        assert self.bank is not None
        bank = self.bank
        if without:
            if self.bank_owner is None:
                raise UserError("a loaded few-shot bank does not know its shots; refit it")
            dropped = torch.tensor(list(without), device=self.bank_owner.device)
            bank = bank[~torch.isin(self.bank_owner, dropped)]
            if bank.shape[0] == 0:
                raise UserError("holding those shots out leaves an empty bank")
        prepared = self._prepare(images)
        grids, _ = self._grids(prepared, bank)
        pairs = zip(grids, prepared, strict=True)
        return [self.grid_map(grid, image.shape[:2]) for grid, image in pairs]

    def patch_grids(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Raw (h, w) patch-score grids at the working resolution, one per image."""
        return self._grids(self._prepare(images))[0]

    def predict(self, images: Sequence[np.ndarray]) -> list[AnomalyMap]:
        prepared = self._prepare(images)
        grids, embeddings = self._grids(prepared)
        maps = []
        for grid, embedding, image in zip(grids, embeddings, prepared, strict=True):
            amap = self.grid_map(grid, image.shape[:2])
            amap.embedding = embedding
            maps.append(amap)
        return maps

    def grid_map(self, grid: np.ndarray, shape: tuple[int, int]) -> AnomalyMap:
        """The map (smoothed to ``shape``) and score of one raw patch-score grid."""
        assert self.shape is not None
        scale = math.sqrt(shape[0] * shape[1] / (self.shape[0] * self.shape[1]))
        sigma = self.config.smoothing * self.backbone.patch_stride * scale
        heatmap = grid_to_map(grid, shape, sigma=sigma)
        score = top_percent_mean(grid, self.config.top_percent)
        return AnomalyMap(map=heatmap, score=score, expert=self.name)

    # --- persistence ------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that restore a fitted expert (for ``np.savez``); the config is separate."""
        if not self.fitted or self.shape is None:
            raise UserError("only a fitted few-shot expert can be saved")
        assert self.bank is not None
        state = {"bank": self.bank.cpu().numpy(), "shape": np.asarray(self.shape)}
        if self.mean is not None and self.scale is not None:
            state["mean"] = self.mean.cpu().numpy()
            state["scale"] = self.scale.cpu().numpy()
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        import torch

        device = str(getattr(self.backbone, "device", "cpu"))
        self.bank = torch.from_numpy(np.asarray(state["bank"], dtype=np.float32)).to(device)
        self.bank_owner = None
        self.shape = (int(state["shape"][0]), int(state["shape"][1]))
        if "mean" in state:
            self.mean = torch.from_numpy(np.asarray(state["mean"], dtype=np.float32)).to(device)
            self.scale = torch.from_numpy(np.asarray(state["scale"], dtype=np.float32)).to(device)
        expected = self.config.position_aware
        if (self.bank.ndim == 4) != expected:
            raise UserError("saved few-shot bank does not match the position_aware setting")
