"""The draft's source line says when a learned type head wrote it."""

from __future__ import annotations

from workstation.core.types import Explanation, ExplanationRevision
from workstation.gui.explanation_panel import describe_source


def _revision(source: str) -> ExplanationRevision:
    return ExplanationRevision(
        1, 1, Explanation(verdict="anomalous"), source, "explainer", "2026-12-03T07:34:00"
    )


def test_learned_types_are_named_in_the_source_line() -> None:
    said = describe_source(_revision("types:types-4"))
    assert said == "learned types (types-4) · 2026-12-03 07:34"
    assert describe_source(_revision("template")) == "template · 2026-12-03 07:34"
