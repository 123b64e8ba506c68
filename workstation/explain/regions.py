"""The region an explanation describes, one definition for the template and the VLM prompt.

Both explainers describe the same pixels: an inspector's mask when there is one, else the
map above its threshold. A threshold that is missing or not above zero is no decision
boundary (on a non-negative map it would mark every pixel), so the map is then cut at
half its peak, which keeps the hottest structure.
"""

from __future__ import annotations

import cv2
import numpy as np

from workstation.core import masks
from workstation.core.types import AnomalyMap


def usable_threshold(anomaly_map: AnomalyMap) -> float | None:
    """The map's threshold when it can decide anything (above zero), else None."""
    t = anomaly_map.threshold
    return t if t is not None and t > 0 else None


def region_mask(anomaly_map: AnomalyMap, mask: np.ndarray | None = None) -> np.ndarray:
    """``mask`` binarised at the map's size, or the map above its usable threshold (half
    its peak without one)."""
    if mask is not None:
        binary = masks.binarize(mask)
        if binary.shape != anomaly_map.map.shape:
            binary = cv2.resize(
                binary, anomaly_map.map.shape[::-1], interpolation=cv2.INTER_NEAREST
            )
        return binary
    threshold = usable_threshold(anomaly_map)
    if threshold is None:
        threshold = 0.5 * float(np.nanmax(anomaly_map.map))
    return masks.mask_from_map(anomaly_map.map, threshold)
