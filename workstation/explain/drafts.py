"""Drafts in the plant's words: a learned type, the examples it came from, this region's facts.

When a region resembles defects an inspector already described, the draft reuses the
closest description of the same type and says whose it is ("like crack/002, reviewed by
anna"), with the location and size words of that text replaced by this region's, and
this region's facts (where, how big, how strong) after it. When nothing reviewed is close
enough, or nobody wrote a text, the template's description follows the learned type. An
unsure answer says so and names the candidates instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from workstation.core.masks import ALL_LOCATIONS
from workstation.explain.template import RegionFacts

QUOTE_SIMILARITY = 0.3
"""A reviewed text is quoted only for regions at least this similar (``Neighbour``)."""
_PERCENT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?%")
_LOCATION = re.compile(
    r"\b(" + "|".join(sorted((re.escape(w) for w in ALL_LOCATIONS), key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ReviewedExample:
    """A reviewed defect a draft may point at or quote."""

    image: str
    defect_type: str
    author: str
    description: str
    similarity: float


@dataclass(frozen=True)
class TypeAnswer:
    """The learned type of a region, as the draft states it."""

    defect_type: str
    confidence: float
    unsure: bool
    candidates: tuple[tuple[str, float], ...]
    """The most likely types with their probabilities, best first."""
    examples: tuple[ReviewedExample, ...]
    """The closest reviewed defects, most similar first."""


def adapt_text(text: str, facts: RegionFacts) -> str:
    """A reviewed description with its location and size words replaced by this region's."""
    adapted = _LOCATION.sub(facts.location, text)
    return _PERCENT.sub(f"{100 * facts.total_area:.1f}%", adapted).strip()


def _names(examples: Sequence[ReviewedExample]) -> str:
    return " and ".join(e.image for e in examples)


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def learned_description(answer: TypeAnswer, facts: RegionFacts, template_text: str) -> str:
    """The draft's text for a region the head has answered (see the module docstring)."""
    if answer.unsure:
        options = " or ".join(f"{t} {_percent(p)}" for t, p in answer.candidates)
        nearest = _names(answer.examples[:2])
        near = f" (nearest reviewed: {nearest})" if nearest else ""
        return f"Type unsure: {options}{near}. {template_text}"
    same = [e for e in answer.examples if e.defect_type == answer.defect_type]
    head = f"{answer.defect_type} ({_percent(answer.confidence)})"
    quotable = [e for e in same if e.description and e.similarity >= QUOTE_SIMILARITY]
    if quotable:
        quoted = quotable[0]
        by = f", reviewed by {quoted.author}" if quoted.author else ""
        return (
            f"{head}, like {quoted.image}{by}: {adapt_text(quoted.description, facts)} "
            f"This one: {facts.sentence()}"
        )
    like = f", like {_names(same[:2])}" if same else ""
    return f"{head}{like}. {template_text}"
