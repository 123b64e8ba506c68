"""Patch scores against a bank of normal patches: nearest-neighbour distances, the
position-aware window search, and the image score taken from a grid of patch scores.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def top_percent_mean(values: np.ndarray, percent: float) -> float:
    """Mean of the top ``percent`` % values: an image score robust to one noisy patch."""
    flat = np.sort(values.ravel())
    count = max(1, math.ceil(flat.size * percent / 100.0))
    return float(flat[-count:].mean())


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


def positional_distances(
    feats: torch.Tensor, bank: torch.Tensor, *, radius: int, knn: int
) -> torch.Tensor:
    """(h, w) mean distance of each patch of one image's (h, w, C) features to its ``knn``
    nearest patches of the (N, h, w, C) ``bank`` within +-``radius`` grid cells."""
    import torch
    import torch.nn.functional as F

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
    k = min(knn, dist.shape[0])
    nearest = torch.topk(dist, k, dim=0, largest=False).values
    return nearest.clamp_min(0).sqrt().mean(0)
