"""Greedy k-centre coreset selection: thins a bank of normal patches to a memory budget.

PatchCore's recipe: keep the patches that cover the normal feature space best, so the
nearest-neighbour distance over the kept rows stays close to the distance over all of them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from workstation.experts.base import ProgressFn
from workstation.experts.patch_norm import MOMENT_ROWS

if TYPE_CHECKING:
    import torch

CORESET_STEPS = 512
"""Greedy coreset selection runs in at most about this many batched steps."""
CORESET_ROWS = 262144
"""Rows per block in each coreset step: bounds the distance buffer's memory."""


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
