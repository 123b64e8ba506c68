"""What one defect region looks like to the product's own experts, as a fixed-length vector.

The defect-type head (``defect_types.py``) learns the plant's types from these vectors, so
they must say what an inspector looks at when naming a defect: what the surface is like
inside the region and right around it (the few-shot expert's patch features, in the units
its normal bank was standardised to, so a channel reads "how many normal spreads away"),
how the pixels differ from their surroundings (darker, brighter, coloured), the anomaly
map's strength, the region's shape (thin and long, compact, ragged, diffuse) and where it
sits. Each group is kept apart (:data:`GROUPS`) so the head can weigh them equally
whatever their widths.

The main region is the largest connected part of the mask; the others count as context
(how many parts, how much area), as a pit cluster or a frayed edge has several.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from workstation.core import masks
from workstation.core.errors import UserError
from workstation.experts.features import resize_rgb, to_rgb_uint8

if TYPE_CHECKING:
    from workstation.experts.base import Backbone
    from workstation.experts.fewshot import FewShotExpert

GROUPS: tuple[str, ...] = ("inside", "core", "contrast", "pixels", "map", "shape", "position")
"""Feature groups in vector order; sizes depend on the backbone's channels."""
SHAPE_SIDE = 256
"""Long side at which shapes are measured: exact enough, and a 5 Mpx mask costs the same."""
RING_CELLS = 1.5
"""Width of the "around" ring in patch cells."""


@dataclass(frozen=True)
class RegionVector:
    """One region's features and the slice of each group in ``values``."""

    values: np.ndarray
    groups: tuple[tuple[str, int], ...]
    """(name, width) in order; widths add up to ``values.size``."""

    def __post_init__(self) -> None:
        if sum(width for _, width in self.groups) != self.values.size:
            raise ValueError("region vector groups do not cover its values")


class PatchSource:
    """Patch features of whole images, normalised the way the product's experts see them.

    A fitted few-shot expert gives its bank's normalisation (standardised or unit-length);
    a bare backbone gives raw features (the head standardises every column anyway).
    """

    def __init__(
        self, backbone: Backbone, *, expert: FewShotExpert | None = None, image_size: int = 256
    ) -> None:
        self.backbone = backbone
        self.expert = expert
        self.image_size = image_size

    @property
    def name(self) -> str:
        return self.backbone.name

    def shape_for(self, image: np.ndarray) -> tuple[int, int]:
        if self.expert is not None and self.expert.shape is not None:
            return self.expert.shape
        from workstation.experts.features import working_shape

        multiple = int(getattr(self.backbone, "size_multiple", self.backbone.patch_stride))
        return working_shape([image.shape[:2]], image_size=self.image_size, multiple=multiple)

    def features(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """(h, w, C) float32 features of one RGB image and the working shape they came from."""
        import torch

        shape = self.shape_for(image)
        resized = resize_rgb(image, shape)
        with torch.inference_mode():
            raw = self.backbone.features([resized]).float().permute(0, 2, 3, 1)
            if self.expert is not None and self.expert.fitted:
                raw = self.expert.normalise(raw)
        return raw[0].cpu().numpy().astype(np.float32), shape


def load_patch_source(folder: Path | None, backbone: str, *, device: str = "cpu") -> PatchSource:
    """The few-shot expert of a fitted experts folder (``pipeline.json`` + bank), or the bare
    ``backbone`` when there is none. Only the few-shot part is loaded: a zero-shot CLIP
    model is not needed to describe a region and would cost seconds."""
    from workstation.experts.base import build_backbone
    from workstation.experts.fewshot import FewShotExpert
    from workstation.experts.pipeline import BANK_FILE, PIPELINE_FILE, PipelineConfig

    if folder is not None and (folder / PIPELINE_FILE).is_file() and (folder / BANK_FILE).is_file():
        manifest = json.loads((folder / PIPELINE_FILE).read_text(encoding="utf-8"))
        config = PipelineConfig.from_dict(manifest["config"])
        expert = FewShotExpert(build_backbone(config.backbone, device=device), config.fewshot)
        with np.load(folder / BANK_FILE) as data:
            expert.load_state({key: data[key] for key in data.files})
        return PatchSource(expert.backbone, expert=expert, image_size=config.fewshot.image_size)
    return PatchSource(build_backbone(backbone, device=device))


def _cell_weights(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Share of each patch cell that ``mask`` covers (area average, so thin lines count)."""
    return cv2.resize(mask.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)


def _weighted_mean(feats: np.ndarray, weights: np.ndarray) -> np.ndarray:
    total = float(weights.sum())
    if total <= 1e-9:
        return np.zeros(feats.shape[-1], np.float32)
    return (feats * weights[..., None]).sum((0, 1)) / total


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return (cv2.dilate(mask, kernel) > 0) & ~(mask > 0)


def _shape_group(main: np.ndarray, regions: Sequence[masks.Region]) -> np.ndarray:
    """Shape of the main part (size, elongation, fill, solidity, thinness, orientation)
    and of the whole mask (parts, their total area)."""
    area = float(main.sum())
    contours, _ = cv2.findContours(main, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours) or 1.0
    hull = cv2.convexHull(np.concatenate(contours)) if contours else None
    hull_area = max(float(cv2.contourArea(hull)) if hull is not None else area, area, 1.0)
    ys, xs = np.nonzero(main)
    coords = np.stack([xs, ys], 1).astype(np.float64)
    cov = np.cov(coords.T) if len(coords) > 2 else np.eye(2)
    values, vectors = np.linalg.eigh(cov)
    major = math.sqrt(max(values[1], 1e-6))
    minor = math.sqrt(max(values[0], 1e-6))
    angle = math.atan2(vectors[1, 1], vectors[0, 1])
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    # Length along the main axis versus half the outline: 1 for a straight line, larger
    # for a winding or branching one (a crack against a scratch).
    along = coords @ vectors[:, 1]
    extent = float(along.max() - along.min()) + 1.0
    total_area = sum(r.area_fraction for r in regions)
    return np.array(
        [
            math.log(max(area / main.size, 1e-7)),
            math.log(max(total_area, 1e-7)),
            math.log(major / minor),
            area / max((x1 - x0) * (y1 - y0), 1),
            area / hull_area,
            math.log(4 * math.pi * area / perimeter**2 + 1e-6),
            math.log(area / (4 * major) + 0.5),  # mean width of a thin shape, in pixels
            math.cos(2 * angle) * (1 - minor / major),
            math.sin(2 * angle) * (1 - minor / major),
            math.log(max(perimeter / 2, extent) / extent),
            math.log(extent / math.sqrt(area)),
            math.log(len(regions)),
        ],
        np.float32,
    )


def _pixel_group(image: np.ndarray, inside: np.ndarray, around: np.ndarray) -> np.ndarray:
    """Lightness and colour inside versus around, in units of the surroundings' spread."""
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    out = []
    for channel in range(3):
        plane = lab[:, :, channel]
        ins = plane[inside] if inside.any() else plane.ravel()
        ring = plane[around] if around.any() else plane.ravel()
        spread = float(ring.std()) + (1.0 if channel == 0 else 0.5)
        out += [(float(ins.mean()) - float(ring.mean())) / spread]
        if channel == 0:
            out += [
                math.log((float(ins.std()) + 0.5) / (float(ring.std()) + 0.5)),
                float(ins.mean()) / 100.0,
                float(ring.mean()) / 100.0,
            ]
    return np.asarray(out, np.float32)


def region_vector(
    image: np.ndarray,
    mask: np.ndarray,
    anomaly_map: np.ndarray | None,
    threshold: float | None,
    source: PatchSource,
) -> RegionVector:
    """Features of the region that ``mask`` marks on ``image`` (see the module docstring).

    ``anomaly_map`` (any size; resized to the image) adds the map's strength relative to
    ``threshold``; without one those columns are zero. An empty mask is refused.
    """
    rgb = to_rgb_uint8(image)
    binary = masks.binarize(mask)
    if binary.shape != rgb.shape[:2]:
        raise UserError(
            f"mask is {binary.shape[1]}x{binary.shape[0]} but the image is "
            f"{rgb.shape[1]}x{rgb.shape[0]}"
        )
    if not binary.any():
        raise UserError("the region is empty: a defect type needs a marked region")
    feats, shape = source.features(rgb)
    grid = feats.shape[:2]
    # Shapes and pixels at a bounded size: the same region gives the same numbers whatever
    # the camera, and a multi-megapixel mask costs what a small one does.
    factor = masks.downsample_factor(binary.shape, SHAPE_SIDE)
    small_size = (max(1, binary.shape[1] // factor), max(1, binary.shape[0] // factor))
    small = (cv2.resize(binary.astype(np.float32), small_size, cv2.INTER_AREA) > 0).astype(
        np.uint8
    )
    regions = masks.analyze_regions(small, max_side=SHAPE_SIDE)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(small, connectivity=8)
    main_label = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    main = (labels == main_label).astype(np.uint8)

    work = (cv2.resize(binary.astype(np.float32), (shape[1], shape[0]), cv2.INTER_AREA) > 0)
    cell_px = max(1, shape[0] // grid[0])
    around = _ring(work.astype(np.uint8), max(2, round(RING_CELLS * cell_px)))
    w_in = _cell_weights(work, grid)
    w_ring = _cell_weights(around, grid)
    inside = _weighted_mean(feats, w_in)
    ring = _weighted_mean(feats, w_ring)

    values = None
    if anomaly_map is not None:
        values = cv2.resize(
            np.asarray(anomaly_map, np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA
        )
    # The core cell: the most anomalous cell the region touches (or its best-covered one).
    touched = w_in > 0
    ranking = np.where(touched, values if values is not None else w_in, -np.inf)
    core_at = np.unravel_index(int(np.argmax(ranking)), grid)
    core = feats[core_at]

    small_rgb = cv2.resize(rgb, small_size, interpolation=cv2.INTER_AREA)
    pixels = _pixel_group(small_rgb, small > 0, _ring(small, max(2, SHAPE_SIDE // 64)))
    map_group = np.zeros(4, np.float32)
    if values is not None:
        level = threshold if threshold is not None and threshold > 0 else float(values.max())
        level = max(level, 1e-6)
        hot = values[touched]
        map_group = np.array(
            [
                math.log(max(float(hot.max()) / level, 1e-3)),
                math.log(max(float((values * w_in).sum() / max(w_in.sum(), 1e-9)) / level, 1e-3)),
                float((hot >= level).mean()),
                math.log(max(float(values[w_ring > 0].mean()) / level, 1e-3))
                if (w_ring > 0).any()
                else 0.0,
            ],
            np.float32,
        )
    cy, cx = (float(v.mean()) / s for v, s in zip(np.nonzero(main), main.shape, strict=True))
    edge = min(cx, cy, 1 - cx, 1 - cy)
    position = np.array([cx, cy, edge, abs(cx - 0.5) + abs(cy - 0.5)], np.float32)
    parts = {
        "inside": inside,
        "core": core,
        "contrast": inside - ring,
        "pixels": pixels,
        "map": map_group,
        "shape": _shape_group(main, regions),
        "position": position,
    }
    return RegionVector(
        values=np.concatenate([parts[name].astype(np.float32) for name in GROUPS]),
        groups=tuple((name, int(parts[name].size)) for name in GROUPS),
    )
