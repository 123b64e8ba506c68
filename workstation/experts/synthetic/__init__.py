"""Synthetic defects made from a product's own normal images (NSA / DRAEM family).

The self-taught expert learns what a product's normal surface looks like by telling
normal crops apart from the same crops with a synthetic defect painted in. The defects
come from the product itself (patches of other normals, its own texture transformed) or
from simple physical shapes (scratches, pits, stains, missing material), so no external
dataset and no pretrained weights are needed. Every example's mask is the set of pixels
that visibly changed, not the region that was touched: a blend that happens to look like
the surface it replaced is not taught as a defect.
"""

from workstation.experts.synthetic.synthesizer import (
    FAMILIES,
    DefectSynthesizer,
    SynthesisMix,
    SyntheticDefect,
)

__all__ = ["FAMILIES", "DefectSynthesizer", "SynthesisMix", "SyntheticDefect"]
