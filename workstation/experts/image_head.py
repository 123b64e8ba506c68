"""The image score that learns from confirmed defects (semi-supervised, DRA / BGAD spirit).

Without labels the image score is a fixed statistic of the fused map (the mean of its top
patch scores). Once inspectors confirm a few defects, the station knows more: how large
and how strong its real defects are against the normal variation. A small logistic model
on statistics of the fused map (its peak, the means of its top 0.1 %, 1 % and 10 %, the
share of pixels above the normal 99th percentile, the overall mean) learns that, trained
on the fusion evidence: held-out normals against synthetic defects and the confirmed ones,
the confirmed ones weighted as much as all synthetic ones together. Strong L2 keeps a
handful of labels from overfitting; the threshold is then set on the held-out normals'
head scores exactly as for the plain score (fusion.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workstation.core.errors import UserError

FEATURES = ("peak", "top0.1", "top1", "top10", "above_normal", "mean")
L2 = 1.0
STEPS = 300


def map_statistics(heat: np.ndarray) -> np.ndarray:
    """The head's inputs from one fused map in normal units (1 = normal 99th percentile)."""
    flat = np.sort(np.asarray(heat, dtype=np.float64).ravel())
    top = [flat[-max(1, int(np.ceil(flat.size * share))) :].mean() for share in (1e-3, 1e-2, 1e-1)]
    return np.asarray([flat[-1], *top, float((flat > 1.0).mean()) * 100.0, flat.mean()])


@dataclass(frozen=True)
class ImageHead:
    """Logistic model on :func:`map_statistics`; ``score`` is its logit."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    bias: float
    labelled: int
    """Confirmed defects it learned from (shown with the choice)."""

    def score(self, heat: np.ndarray) -> float:
        z = (map_statistics(heat) - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(z @ np.asarray(self.coef) + self.bias)

    def to_dict(self) -> dict[str, object]:
        return {
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "bias": self.bias,
            "labelled": self.labelled,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ImageHead:
        try:
            return cls(
                mean=tuple(float(v) for v in data["mean"]),  # type: ignore[attr-defined]
                scale=tuple(float(v) for v in data["scale"]),  # type: ignore[attr-defined]
                coef=tuple(float(v) for v in data["coef"]),  # type: ignore[attr-defined]
                bias=float(data["bias"]),  # type: ignore[arg-type]
                labelled=int(data.get("labelled", 0)),  # type: ignore[call-overload]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"the saved image head is damaged ({exc}); refit the product") from exc


def fit_head(
    heats: Sequence[np.ndarray], anomalous: Sequence[bool], confirmed: Sequence[bool]
) -> ImageHead:
    """Fit on evidence maps; ``confirmed`` marks the inspectors' defects among them."""
    x = np.stack([map_statistics(h) for h in heats])
    y = np.asarray(anomalous, dtype=np.float64)
    real = np.asarray(confirmed, dtype=bool)
    if y.all() or not y.any():
        raise UserError("the image head needs both normals and defects")
    weights = np.where(y > 0, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    synthetic = (y > 0) & ~real
    if real.any() and synthetic.any():
        # the confirmed defects, together, count as much as all synthetic ones
        weights[real] = weights[synthetic].sum() / real.sum()
    weights = weights / weights.sum()
    mean = x.mean(0)
    scale = np.maximum(x.std(0), 1e-6)
    z = (x - mean) / scale
    coef = np.zeros(z.shape[1])
    bias = 0.0
    rate = 0.5
    for _ in range(STEPS):
        p = 1.0 / (1.0 + np.exp(-(z @ coef + bias)))
        error = weights * (p - y)
        coef -= rate * (z.T @ error + L2 * coef / len(y))
        bias -= rate * float(error.sum())
    return ImageHead(
        mean=tuple(mean.tolist()),
        scale=tuple(scale.tolist()),
        coef=tuple(coef.tolist()),
        bias=bias,
        labelled=int(real.sum()),
    )
