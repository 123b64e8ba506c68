"""The answer parser: lenient on wrapping and wording, strict on never raising."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workstation.core.types import Explanation
from workstation.explain.parse import parse_explanation

FULL = {
    "verdict": "anomalous",
    "defect_type": "scratch",
    "location": "upper left",
    "severity": "high",
    "description": "A long thin scratch.",
}


def test_plain_json() -> None:
    assert parse_explanation(json.dumps(FULL)) == Explanation(**FULL)


@pytest.mark.parametrize(
    "text",
    [
        "```json\n" + json.dumps(FULL) + "\n```",
        "Sure! Here is my analysis:\n" + json.dumps(FULL, indent=2) + "\nHope this helps.",
        str(FULL),  # Python repr: single quotes
        json.dumps(FULL)[:-1] + ",}",  # trailing comma
        "{verdict: 'anomalous', defect_type: 'scratch', location: 'top-left', "
        "severity: 'severe', description: 'A long thin scratch.'}",
        "{'Verdict': 'Defective', 'Defect Type': 'scratch', 'Position': 'Top Left', "
        "'Severity': 'High', 'Explanation': 'A long thin scratch.'}",
    ],
)
def test_wrapped_and_sloppy_answers(text: str) -> None:
    assert parse_explanation(text) == Explanation(**FULL)


def test_missing_fields_get_defaults() -> None:
    result = parse_explanation('{"verdict": "defective"}')
    assert result == Explanation(verdict="anomalous", severity="medium")


def test_normal_synonyms_clear_defect_fields() -> None:
    result = parse_explanation('{"verdict": "OK", "defect_type": "none", "severity": "high"}')
    assert result == Explanation(verdict="normal", severity="low")
    assert parse_explanation('{"verdict": "not defective"}').verdict == "normal"
    assert parse_explanation('{"is_anomalous": false}').verdict == "normal"


def test_verdict_inferred_from_defect_type() -> None:
    assert parse_explanation('{"defect_type": "crack"}').verdict == "anomalous"


def test_truncated_answer_is_closed() -> None:
    text = '{"verdict": "anomalous", "defect_type": "pit", "description": "a small pi'
    result = parse_explanation(text)
    assert result is not None and result.defect_type == "pit"
    assert result.description == "a small pi"


def test_key_value_lines() -> None:
    text = "Verdict: anomalous\nDefect type: dent\nLocation: bottom right\nSeverity: minor"
    assert parse_explanation(text) == Explanation(
        verdict="anomalous", defect_type="dent", location="lower right", severity="low"
    )


def test_skips_unreadable_objects_before_the_answer() -> None:
    text = '{not json at all} then {"foo": 1} and finally ' + json.dumps(FULL)
    assert parse_explanation(text) == Explanation(**FULL)


def test_unknown_location_kept_as_text() -> None:
    result = parse_explanation('{"verdict": "anomalous", "location": "near the thread"}')
    assert result is not None and result.location == "near the thread"


@pytest.mark.parametrize(
    "text", ["", "   ", "no json here", "{}", "[1, 2]", '{"verdict": "maybe"}', "{{{{", None, 42]
)
def test_unreadable_returns_none(text: object) -> None:
    assert parse_explanation(text) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_arbitrary_text_never_raises(text: str) -> None:
    result = parse_explanation(text)
    assert result is None or isinstance(result, Explanation)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["verdict", "defect_type", "location", "severity", "description", "x"]),
        json_values,
    ),
    st.text(max_size=40),
    st.text(max_size=40),
    st.booleans(),
)
def test_fuzz_wrapped_objects_never_raise(
    fields: dict, prefix: str, suffix: str, fence: bool
) -> None:
    body = json.dumps(fields)
    text = prefix + (f"```json\n{body}\n```" if fence else body) + suffix
    result = parse_explanation(text)
    assert result is None or isinstance(result, Explanation)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["anomalous", "Defective", "NG", "bad"]),
    st.text(
        alphabet=st.characters(blacklist_characters="{}\"'\\`", blacklist_categories=("Cs",)),
        max_size=30,
    ),
    st.text(
        alphabet=st.characters(blacklist_characters="{}\"'\\`", blacklist_categories=("Cs",)),
        max_size=30,
    ),
)
def test_fuzz_valid_answer_survives_prose(verdict: str, prefix: str, suffix: str) -> None:
    text = f'{prefix}{{"verdict": "{verdict}", "severity": "low"}}{suffix}'
    result = parse_explanation(text)
    assert result is not None and result.verdict == "anomalous" and result.severity == "low"
