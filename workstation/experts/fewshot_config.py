"""The few-shot expert's settings: bank size, neighbour count, feature norm, smoothing.

Kept apart from the expert so that callers which only pass settings around (evaluation,
training rounds, the fusion pipeline) can read them without the expert's machinery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from workstation.core.errors import UserError

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
