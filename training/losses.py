"""Segmentation losses shared by the rounds that train per-pixel (or per-patch) defect maps.

Focal so that the rare defect pixels are not drowned by the many easy normal ones, dice so
that a small mask still counts as a whole object rather than as a handful of pixels.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, *, gamma: float, alpha: float
) -> torch.Tensor:
    """Binary focal loss on soft targets: rare defect patches are not drowned by easy normals."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    prob = torch.sigmoid(logits)
    p_t = prob * target + (1 - prob) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * (1 - p_t) ** gamma * bce).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft dice over the batch; only images with some defect area contribute to it."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    has_defect = target.sum(dim=1) > 0
    if not bool(has_defect.any()):
        return logits.new_zeros(())
    prob, target = prob[has_defect], target[has_defect]
    inter = (prob * target).sum(dim=1)
    return (1 - (2 * inter + 1) / (prob.sum(dim=1) + target.sum(dim=1) + 1)).mean()
