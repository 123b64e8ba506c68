"""Normalisation of patch features before the nearest-neighbour search.

Which norm fits depends on the backbone: cosine (l2) for self-supervised ViT features,
per-channel standardisation for hand-made filter banks whose channels differ in scale, and
whitening (a Mahalanobis distance, PaDiM-style) where channels are strongly correlated.
The statistics come from the normal shots only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MOMENT_ROWS = 16384
"""Rows per float64 block when computing normalisation statistics."""


def standardisation(raw: torch.Tensor, *, whiten: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, scale)`` of raw ``(..., C)`` normal features: ``scale`` is the per-channel
    spread, or with ``whiten`` a (C, C) matrix applied by ``normalise_in_place``."""
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
    mean = mean64.float()
    std = var.sqrt().float() if rows > 1 else torch.ones_like(mean)
    # A channel that never varies on normals (e.g. colour on gray parts) would blow
    # up any tiny change; floor its scale at a fraction of the typical channel's.
    scale = torch.clamp(std, min=float(std.median()) * 1e-2 + 1e-6)
    if whiten:
        # Mahalanobis distance on the normal patches' covariance (PaDiM-style), with
        # shrinkage towards the diagonal so few shots still give a stable inverse.
        cov = torch.zeros((flat.shape[1],) * 2, dtype=torch.float64, device=flat.device)
        for start in range(0, rows, MOMENT_ROWS):
            z = ((flat[start : start + MOMENT_ROWS] - mean) / scale).double()
            cov += z.T @ z
        cov = (cov / max(rows - 1, 1)).float()
        eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        cov = 0.9 * cov + 0.1 * eye
        values, vectors = torch.linalg.eigh(cov)
        inv_sqrt = vectors @ torch.diag(values.clamp_min(1e-4).rsqrt()) @ vectors.T
        scale = torch.diag(1.0 / scale) @ inv_sqrt
    return mean, scale


def normalise_in_place(
    feats: torch.Tensor,
    norm: str,
    mean: torch.Tensor | None,
    scale: torch.Tensor | None,
) -> torch.Tensor:
    """Fresh features in the bank's space, in place where the norm allows (bank memory)."""
    import torch

    with torch.inference_mode():
        if norm == "l2":
            return feats.div_(feats.norm(dim=-1, keepdim=True).clamp_min_(1e-12))
        if norm == "standardize":
            assert mean is not None and scale is not None
            return feats.sub_(mean).div_(scale)
        if norm == "whiten":
            assert mean is not None and scale is not None
            return feats.sub_(mean) @ scale
    return feats
