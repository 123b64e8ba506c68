"""Adapter round: train the segmentation head of :mod:`workstation.experts.adapter`.

Features of the frozen backbone are computed once per image; the head then trains on the
cached grids with focal + dice loss (focal so rare defect patches are not drowned by easy
normal ones, dice so small masks still count as a whole).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from training import distributed
from training.kinds.adapter import AdapterHyperparameters
from training.losses import dice_loss, focal_loss
from workstation.experts.adapter import SegmentationHead

StepFn = Callable[[int, int, float], None]
"""``on_step(step, total, loss)``; raise from it to stop training."""


def train_head(
    features: torch.Tensor,
    targets: torch.Tensor,
    *,
    hyper: AdapterHyperparameters,
    seed: int = 0,
    on_step: StepFn | None = None,
    init: SegmentationHead | None = None,
) -> SegmentationHead:
    """Train a head on cached ``(N, C, h, w)`` features against ``(N, 1, h, w)`` soft masks.

    ``init`` (the parent round's head) continues from what earlier rounds learned, keeping
    its feature statistics; the gate then checks on the golden set that nothing was lost.

    Under torchrun every rank draws the same global batch (same generator) and computes
    its rank-strided shard of it, so N processes train on the batches one process would.
    """
    if features.shape[0] != targets.shape[0] or features.shape[2:] != targets.shape[2:]:
        raise ValueError(
            f"features {tuple(features.shape)} and targets {tuple(targets.shape)} differ"
        )
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = SegmentationHead(features.shape[1], hyper.hidden).to(features.device)
    if init is not None and init.mean.shape[1] == features.shape[1] and _same_shape(init, head):
        head.load_state_dict(init.state_dict())
    else:
        head.set_statistics(features)
    optimiser = torch.optim.AdamW(
        head.parameters(), lr=hyper.learning_rate, weight_decay=hyper.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=hyper.steps)
    count = features.shape[0]
    batch = min(hyper.batch_size, count)
    world = distributed.world()
    model = world.wrap(head, str(features.device))
    head.train()
    for step in range(1, hyper.steps + 1):
        index = world.shard(torch.randperm(count, generator=generator)[:batch])
        index = index.to(features.device)
        x, y = features[index].float(), targets[index]
        if bool(torch.rand((), generator=generator) < 0.5):  # flips are free on patch grids
            x, y = x.flip(-1), y.flip(-1)
        logits = model(x)
        loss = focal_loss(logits, y, gamma=hyper.focal_gamma, alpha=hyper.focal_alpha)
        loss = loss + hyper.dice_weight * dice_loss(logits, y)
        if world.enabled:
            loss = loss * world.weight(len(index), batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if on_step is not None:
            on_step(step, hyper.steps, world.mean(float(loss.detach())))
    head.eval()
    return head


def _same_shape(a: SegmentationHead, b: SegmentationHead) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


def mask_targets(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Image-sized 0/1 masks ``(N, 1, H, W)`` -> defect fraction per patch cell."""
    return F.adaptive_avg_pool2d(masks.float(), grid).clamp(0, 1)


class EtaClock:
    """Seconds left, from the mean time per step so far."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def eta(self, step: int, total: int) -> float:
        elapsed = time.monotonic() - self._start
        if step <= 0:
            return math.nan
        return elapsed / step * (total - step)
