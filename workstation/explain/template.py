"""Weight-free explainer: turns an anomaly map (and optionally a mask) into words.

Deterministic, fast and always available, so the demo and installs without a VLM still
say what, where, how big and how bad. It is also the fallback whenever a VLM answer
cannot be parsed. The shape rules are coarse on purpose (they only look at geometry and
strength): elongated regions read as scratches or cracks, small compact ones as pits or
spots, large weak ones as stains, large strong solid ones as missing material.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from workstation.core import masks
from workstation.core.types import AnomalyMap, Explanation, Product, Severity
from workstation.explain.regions import region_mask, usable_threshold

ShapeClass = Literal["scratch", "pit", "stain", "missing material"]

# Words that name each shape class in a product's defect vocabulary, most specific first.
SHAPE_SYNONYMS: dict[ShapeClass, tuple[str, ...]] = {
    "scratch": ("scratch", "crack", "scuff", "cut", "line", "fissure", "groove"),
    "pit": ("pit", "spot", "dent", "hole", "dot", "speck", "pore", "bubble", "particle"),
    "stain": (
        "stain",
        "contamination",
        "discolo",
        "color",
        "colour",
        "dirt",
        "residue",
        "smudge",
        "oil",
        "rust",
        "corrosion",
    ),
    "missing material": ("missing", "chip", "broken", "break", "fracture", "crush", "damage"),
}
SHAPE_PHRASES: dict[ShapeClass, str] = {
    "scratch": "elongated (scratch- or crack-like)",
    "pit": "compact (pit- or spot-like)",
    "stain": "diffuse (stain-like)",
    "missing material": "large and solid (missing material)",
}


@dataclass(frozen=True)
class TemplateRules:
    """The thresholds behind the shape and severity words; engineers may tune them."""

    elongated: float = 3.0
    """major/minor axis ratio at or above which a region reads as a scratch or crack."""
    large_area: float = 0.10
    """area fraction of the main region above which it is a stain or missing material."""
    diffuse_area: float = 0.02
    """area fraction above which a weak compact region reads as a stain, not a pit."""
    weak_ratio: float = 1.3
    """peak / threshold below which a region is low-contrast."""
    strong_ratio: float = 2.0
    solid_fill: float = 0.6
    high_area: float = 0.05
    medium_area: float = 0.01
    medium_ratio: float = 1.4
    max_side: int = 128
    """long side of the downsampled map used for region analysis."""


DEFAULT_RULES = TemplateRules()


def classify_shape(region: masks.Region, ratio: float | None, rules: TemplateRules) -> ShapeClass:
    """Shape class of a region from its geometry and its strength relative to the threshold."""
    weak = ratio is not None and ratio < rules.weak_ratio
    strong = ratio is None or ratio >= rules.strong_ratio
    if region.area_fraction >= rules.large_area:
        return "missing material" if strong and region.fill >= rules.solid_fill else "stain"
    if region.elongation >= rules.elongated:
        return "scratch"
    if weak and region.area_fraction >= rules.diffuse_area:
        return "stain"
    return "pit"


def vocabulary_word(shape: ShapeClass, vocabulary: tuple[str, ...]) -> str:
    """The product's own word for a shape class when one matches, else the class name."""
    for synonym in SHAPE_SYNONYMS[shape]:
        for word in vocabulary:
            if synonym in word.lower():
                return word
    return shape


def severity_of(ratio: float | None, area: float, rules: TemplateRules) -> Severity:
    """Severity from the stronger of two signals: strength over the threshold and size."""
    if (ratio is not None and ratio >= rules.strong_ratio) or area >= rules.high_area:
        return "high"
    if (ratio is not None and ratio >= rules.medium_ratio) or area >= rules.medium_area:
        return "medium"
    return "low"


def _percent(fraction: float) -> str:
    percent = 100 * fraction
    if percent >= 10:
        return f"{percent:.0f}%"
    if percent >= 0.1:
        return f"{percent:.1f}%"
    return f"{percent:.2f}%" if percent >= 0.01 else "<0.01%"


def _ratio_text(ratio: float | None) -> str:
    return "" if ratio is None else f"; peak {ratio:.1f}x the threshold"


@dataclass(frozen=True)
class RegionFacts:
    """What the template says about a region, for any explainer that words it differently."""

    regions: tuple[masks.Region, ...]
    location: str
    total_area: float
    ratio: float | None
    """Peak of the main region over the threshold (the image score's when unknown)."""
    shape: ShapeClass
    severity: Severity

    @property
    def main(self) -> masks.Region:
        return self.regions[0]

    def sentence(self) -> str:
        """This region's where, how big and how strong, in one sentence."""
        count = len(self.regions)
        head = "1 region" if count == 1 else f"{count} regions"
        where = "in the center" if self.location == "center" else f"in the {self.location}"
        size = _percent(self.total_area)
        return f"{head}, mostly {where}, {size} of the image{_ratio_text(self.ratio)}."


def region_facts(
    anomaly_map: AnomalyMap,
    region: np.ndarray,
    *,
    from_mask: bool,
    rules: TemplateRules = DEFAULT_RULES,
) -> RegionFacts | None:
    """Facts of the regions in ``region`` (from ``regions.region_mask``); None when empty."""
    threshold = usable_threshold(anomaly_map)
    score_ratio = None if threshold is None else anomaly_map.score / threshold
    values = None if from_mask else anomaly_map.map
    regions = masks.analyze_regions(region, values, max_side=rules.max_side)
    if not regions:
        return None
    main = regions[0]
    ratio = score_ratio
    if main.peak is not None and threshold is not None:
        ratio = main.peak / threshold
    total_area = sum(r.area_fraction for r in regions)
    cell = masks.dominant_cell(region) or main.cell
    return RegionFacts(
        regions=tuple(regions),
        location=masks.grid_words(cell),
        total_area=total_area,
        ratio=ratio,
        shape=classify_shape(main, ratio, rules),
        severity=severity_of(ratio, total_area, rules),
    )


def explain(
    anomaly_map: AnomalyMap,
    *,
    mask: np.ndarray | None = None,
    product: Product | None = None,
    rules: TemplateRules = DEFAULT_RULES,
) -> Explanation:
    """Describe ``anomaly_map``; ``mask`` (e.g. an inspector's) replaces the thresholded map.

    The verdict follows the map's score against its threshold; when a mask is given, a
    non-empty mask means anomalous. The location names the grid cell that holds the
    largest part of all anomalous pixels.
    """
    threshold = usable_threshold(anomaly_map)
    score_ratio = None if threshold is None else anomaly_map.score / threshold
    region = region_mask(anomaly_map, mask)
    if mask is not None:
        anomalous = bool(region.any())
    elif anomaly_map.anomalous is not None:
        anomalous = anomaly_map.anomalous
    else:
        anomalous = bool(region.any())
    if not anomalous:
        strength = "" if score_ratio is None else f" (score {score_ratio:.2f}x the threshold)"
        return Explanation(
            verdict="normal",
            severity="low",
            description=f"No region stands out from the normal references{strength}.",
        )
    facts = region_facts(anomaly_map, region, from_mask=mask is not None, rules=rules)
    if facts is None:
        return Explanation(
            verdict="anomalous",
            severity=severity_of(score_ratio, 0.0, rules),
            description=(
                "The image score is above the threshold, but no single region exceeds it"
                f"{_ratio_text(score_ratio)}."
            ),
        )
    main = facts.main
    vocabulary = product.defect_vocabulary if product is not None else ()
    count = len(facts.regions)
    head = "1 anomalous region" if count == 1 else f"{count} anomalous regions"
    main_words = "It" if count == 1 else "The largest"
    where = "in the center" if facts.location == "center" else f"in the {facts.location}"
    description = (
        f"{head}, mostly {where} ({_percent(facts.total_area)} of the image). "
        f"{main_words} is {SHAPE_PHRASES[facts.shape]}, covering {_percent(main.area_fraction)}"
        f" with elongation {main.elongation:.1f}{_ratio_text(facts.ratio)}."
    )
    return Explanation(
        verdict="anomalous",
        defect_type=vocabulary_word(facts.shape, vocabulary),
        location=facts.location,
        severity=facts.severity,
        description=description,
    )
