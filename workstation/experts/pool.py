"""Pool expert: the few-shot bank, plus mutual scoring against the station's unlabelled pool.

Why: a station holds hundreds of unreviewed images of the product, and defects are rare and
local. A patch that is normal (a grease film, dust, a lighting change that no train shot
shows) recurs in many other pool images; a defect patch finds no close match in most of
them. MuSc (Li et al., ICLR 2024) scores each patch by its nearest-neighbour distances to
the *other* unlabelled images and averages the smallest of them, so a few images with a
similar defect cannot make a defect look normal, while a variation shared by a good part of
the pool does.

Here the patch score is ``min(bank distance, pool distance)``: a patch counts as anomalous
only when it is far from the normal shots *and* from the pool's common appearance. Both
distances are Euclidean in the same normalised feature space, so no rescaling is needed,
and the pool can only lower a score (fewer false alarms; a defect type present in more than
``lowest_fraction`` of the pool is the failure mode).

Compute is bounded whatever the pool size: ``references`` pool images (seeded sample) keep
``patches_per_image`` patches each (seeded sample); every scored image compares its patches
with each reference image but itself (recognised by its pixels) in chunks.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from workstation.core.errors import UserError
from workstation.experts.base import Backbone
from workstation.experts.fewshot import FewShotConfig, FewShotExpert

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class PoolConfig:
    references: int = 24
    """Pool images kept as references (a seeded sample when the pool is larger)."""
    patches_per_image: int = 768
    """Patches kept per reference image (a seeded sample): bounds memory and time."""
    lowest_fraction: float = 0.3
    """A patch's pool distance is the mean of the smallest ``lowest_fraction`` of its
    per-reference-image nearest distances (MuSc's interval average)."""
    query_chunk: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        if self.references < 2 or self.patches_per_image < 1:
            raise UserError("the pool needs at least 2 reference images and 1 patch each")
        if not 0 < self.lowest_fraction <= 1:
            raise UserError("lowest_fraction must be in (0, 1]")


def image_key(rgb: np.ndarray) -> str:
    """Identity of an image by its pixels: an image is never compared with itself."""
    return hashlib.blake2b(np.ascontiguousarray(rgb).tobytes(), digest_size=16).hexdigest()


def per_image_nearest(
    queries: torch.Tensor, references: Sequence[torch.Tensor], chunk: int
) -> torch.Tensor:
    """(N, R): distance of each query row to its nearest row in each reference set."""
    import torch

    out = torch.empty(queries.shape[0], len(references), dtype=queries.dtype, device=queries.device)
    norms = [(r * r).sum(1) for r in references]
    for start in range(0, queries.shape[0], chunk):
        block = queries[start : start + chunk]
        block_norm = (block * block).sum(1)
        for j, (ref, ref_norm) in enumerate(zip(references, norms, strict=True)):
            squared = torch.addmm(ref_norm[None, :], block, ref.T, alpha=-2.0).amin(1)
            out[start : start + block.shape[0], j] = (squared + block_norm).clamp_min(0).sqrt()
    return out


def interval_mean(distances: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean of the smallest ``fraction`` of each row (at least one value)."""
    import torch

    take = max(1, math.ceil(fraction * distances.shape[1]))
    return torch.topk(distances, take, dim=1, largest=False).values.mean(1)


class PoolExpert(FewShotExpert):
    """The few-shot expert whose patch scores the unlabelled pool can lower (module doc)."""

    def __init__(
        self,
        backbone: Backbone,
        config: FewShotConfig | None = None,
        pool: PoolConfig | None = None,
    ) -> None:
        super().__init__(backbone, config)
        self.name = "pool"
        self.pool_config = pool or PoolConfig()
        self._references: list[torch.Tensor] = []
        self._reference_keys: list[str] = []

    @property
    def pool_size(self) -> int:
        """Reference images in use (0: no pool, plain few-shot scores)."""
        return len(self._references)

    def set_pool(self, images: Sequence[np.ndarray]) -> int:
        """Take reference patches from the unlabelled ``images`` (after ``fit``: the features
        are normalised as the bank's). Fewer than two usable images clear the pool. Returns
        the number of reference images kept."""
        import torch

        if self.shape is None:
            raise UserError("fit the pool expert on normal images before giving it a pool")
        cfg = self.pool_config
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(images))[: cfg.references]
        prepared = self._prepare([images[i] for i in sorted(order)])
        references: list[torch.Tensor] = []
        keys: list[str] = []
        size = self.config.batch_size
        for start in range(0, len(prepared), size):
            batch = prepared[start : start + size]
            for rgb, feats in zip(batch, self._normalise(self._features(batch)), strict=True):
                flat = feats.reshape(-1, feats.shape[-1])
                if flat.shape[0] > cfg.patches_per_image:
                    pick = rng.choice(flat.shape[0], cfg.patches_per_image, replace=False)
                    flat = flat[torch.from_numpy(np.sort(pick)).to(flat.device)]
                references.append(flat.contiguous())
                keys.append(image_key(rgb))
        if len(references) < 2:
            references, keys = [], []
        self._references, self._reference_keys = references, keys
        return len(references)

    def _image_grid(
        self, image: np.ndarray, feats: torch.Tensor, bank: torch.Tensor
    ) -> torch.Tensor:
        import torch

        bank_grid = super()._image_grid(image, feats, bank)
        key = image_key(image)
        others = [
            r for r, k in zip(self._references, self._reference_keys, strict=True) if k != key
        ]
        if len(others) < 2:
            return bank_grid
        h, w, channels = feats.shape
        distances = per_image_nearest(
            feats.reshape(-1, channels), others, self.pool_config.query_chunk
        )
        pool_grid = interval_mean(distances, self.pool_config.lowest_fraction).reshape(h, w)
        return torch.minimum(bank_grid, pool_grid)

    # --- persistence: a model version keeps the pool it was fitted with -----------------

    def state(self) -> dict[str, np.ndarray]:
        state = super().state()
        if self._references:
            state["pool"] = np.concatenate([r.cpu().numpy() for r in self._references])
            state["pool_sizes"] = np.asarray([r.shape[0] for r in self._references])
            state["pool_keys"] = np.asarray(self._reference_keys)
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        import torch

        super().load_state(state)
        self._references, self._reference_keys = [], []
        if "pool" in state:
            device = str(getattr(self.backbone, "device", "cpu"))
            pool = torch.from_numpy(np.asarray(state["pool"], dtype=np.float32)).to(device)
            sizes = [int(n) for n in state["pool_sizes"]]
            self._references = list(pool.split(sizes))
            self._reference_keys = [str(k) for k in state["pool_keys"]]
