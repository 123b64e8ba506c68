"""What every explainer returns, and the weight-free explainer behind the same interface.

The GUI and services talk to :class:`Explainer` only, so switching between the template
and a VLM (or falling back from one to the other) changes nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from workstation.core.types import Explanation
from workstation.explain import template
from workstation.explain.prompts import ExplainRequest

TokenCallback = Callable[[str], None]
"""Receives each new piece of generated text, on the thread that runs the explainer."""

TEMPLATE_SOURCE = "template"


@dataclass(frozen=True)
class ExplainResult:
    """One explanation and how it was made.

    ``source`` is the revision source to store it under: ``template`` or
    ``vlm:<version>``. ``fallback`` is True when a VLM was asked but its answers could not
    be read, so the template answered instead (``raw_text`` keeps the unreadable text).
    """

    explanation: Explanation
    source: str
    raw_text: str = ""
    tokens: int = 0
    seconds: float = 0.0
    fallback: bool = False
    attempts: int = 0
    cached: bool = False

    def to_record(self) -> dict[str, Any]:
        return {
            "explanation": self.explanation.to_dict(),
            "source": self.source,
            "raw_text": self.raw_text,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "fallback": self.fallback,
            "attempts": self.attempts,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], *, cached: bool = False) -> ExplainResult:
        return cls(
            explanation=Explanation(**record["explanation"]),
            source=str(record["source"]),
            raw_text=str(record.get("raw_text", "")),
            tokens=int(record.get("tokens", 0)),
            seconds=float(record.get("seconds", 0.0)),
            fallback=bool(record.get("fallback", False)),
            attempts=int(record.get("attempts", 0)),
            cached=cached,
        )


StopCheck = Callable[[], bool]
"""Polled during generation; returning True ends it early (e.g. the user moved on)."""


class Explainer(Protocol):
    """Anything that explains a request; ``on_token`` streams text while it is generated."""

    @property
    def source(self) -> str: ...

    def explain(
        self,
        request: ExplainRequest,
        *,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> ExplainResult: ...


def template_result(
    request: ExplainRequest, *, fallback: bool = False, raw_text: str = "", **extra: Any
) -> ExplainResult:
    """The template's explanation of ``request`` as a result."""
    explanation = template.explain(request.anomaly_map, mask=request.mask, product=request.product)
    return ExplainResult(
        explanation=explanation,
        source=TEMPLATE_SOURCE,
        raw_text=raw_text,
        fallback=fallback,
        **extra,
    )


class TemplateExplainer:
    """The weight-free explainer; ``on_token`` receives the finished description at once."""

    source = TEMPLATE_SOURCE

    def explain(
        self,
        request: ExplainRequest,
        *,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> ExplainResult:
        """Instant, so ``should_stop`` has nothing to interrupt."""
        result = template_result(request)
        if on_token is not None:
            on_token(result.explanation.description)
        return result
