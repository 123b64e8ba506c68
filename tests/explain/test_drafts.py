"""Drafts in the plant's words: quote the closest reviewed text, fill in this region."""

from __future__ import annotations

import numpy as np

from workstation.core.types import AnomalyMap
from workstation.explain import template
from workstation.explain.drafts import (
    ReviewedExample,
    TypeAnswer,
    adapt_text,
    learned_description,
)
from workstation.explain.regions import region_mask


def _facts() -> template.RegionFacts:
    values = np.zeros((90, 90), np.float32)
    values[70:80, 5:15] = 2.0
    amap = AnomalyMap(values, score=2.0, threshold=1.0)
    facts = template.region_facts(amap, region_mask(amap, None), from_mask=False)
    assert facts is not None
    return facts


def _answer(**kw: object) -> TypeAnswer:
    values: dict[str, object] = {
        "defect_type": "crack",
        "confidence": 0.87,
        "unsure": False,
        "candidates": (("crack", 0.87), ("scratch", 0.1)),
        "examples": (
            ReviewedExample(
                "crack/002.png", "crack", "anna",
                "Thin crack in the upper right, 3% of the face.", 0.8,
            ),
        ),
    }
    values.update(kw)
    return TypeAnswer(**values)  # type: ignore[arg-type]


def test_a_close_reviewed_text_is_quoted_with_this_regions_facts() -> None:
    facts = _facts()
    text = learned_description(_answer(), facts, "template words")
    assert text.startswith("crack (87%), like crack/002.png, reviewed by anna: ")
    assert "lower left" in text and "upper right" not in text  # its location, not theirs
    assert "3%" not in text and "1.2%" in text
    assert text.endswith(facts.sentence()) and "template words" not in text


def test_without_a_close_text_the_template_follows_the_type() -> None:
    far = ReviewedExample("crack/002.png", "crack", "anna", "Thin crack.", 0.1)
    text = learned_description(_answer(examples=(far,)), _facts(), "template words")
    assert text == "crack (87%), like crack/002.png. template words"


def test_an_unsure_answer_names_the_candidates() -> None:
    text = learned_description(_answer(unsure=True), _facts(), "template words")
    assert text.startswith("Type unsure: crack 87% or scratch 10% (nearest reviewed: crack/002")


def test_adapt_text_leaves_other_words_alone() -> None:
    assert adapt_text("Scuff, no location given.", _facts()) == "Scuff, no location given."
