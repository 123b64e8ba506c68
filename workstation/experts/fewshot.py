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

The parts live beside this module: settings in ``fewshot_config``, the shots' views and
calibration choice in ``shot_views``, feature norms in ``patch_norm``, the coreset in
``coreset`` and the distance search and image score in ``patch_knn``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from workstation.core.errors import UserError
from workstation.core.types import AnomalyMap
from workstation.experts.base import Backbone, ProgressFn, StageFn
from workstation.experts.coreset import greedy_coreset
from workstation.experts.features import (
    check_min_size,
    grid_to_map,
    resize_rgb,
    to_rgb_uint8,
    working_shape,
)
from workstation.experts.fewshot_config import FewShotConfig
from workstation.experts.patch_knn import nearest_distances, positional_distances, top_percent_mean
from workstation.experts.patch_norm import normalise_in_place, standardisation
from workstation.experts.shot_views import augmentations, calibration_indices

if TYPE_CHECKING:
    import torch

__all__ = ["FewShotConfig", "FewShotExpert", "calibration_indices", "image_embedding"]


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
        return normalise_in_place(feats, self.norm, self.mean, self.scale)

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw ``(N, h, w, C)`` backbone features at ``self.shape`` in the bank's space.

        For callers that extract features once and reuse them across many fits (the
        active-learning simulation): returns a normalised copy, ``raw`` is left as it was.
        """
        if not self.fitted:
            raise UserError("the few-shot expert has not been fitted on normal images yet")
        return self._normalise(raw.clone())

    def _set_standardisation(self, raw: torch.Tensor) -> None:
        self.mean, self.scale = standardisation(raw, whiten=self.norm == "whiten")

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
            variants = augmentations(resized, square) if self.config.augment else [resized]
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
                flips = augmentations(self._single_shot, square=False)[1:]
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
        radius, knn = self.config.position_radius, self.config.knn
        return positional_distances(feats, bank, radius=radius, knn=knn)

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
