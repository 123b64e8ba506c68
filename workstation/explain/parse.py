"""Reading a language model's answer into an :class:`Explanation`, whatever it wrapped it in.

Models add code fences and prose, use single quotes, leave trailing commas, stop mid-object
when the token budget runs out, or say "defective" instead of "anomalous". The parser
accepts all of that and never raises: it returns None when no verdict can be recovered, and
the caller retries with a stricter prompt or falls back to the template explainer.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from workstation.core import masks
from workstation.core.types import Explanation, ExplanationVerdict, Severity

MAX_CANDIDATES = 20
MAX_FIELD_CHARS = 2000

KEY_SYNONYMS: dict[str, str] = {
    "verdict": "verdict",
    "label": "verdict",
    "status": "verdict",
    "result": "verdict",
    "classification": "verdict",
    "decision": "verdict",
    "is_anomalous": "verdict",
    "anomalous": "verdict",
    "anomaly": "verdict",
    "defect_type": "defect_type",
    "defecttype": "defect_type",
    "defect": "defect_type",
    "type": "defect_type",
    "anomaly_type": "defect_type",
    "category": "defect_type",
    "location": "location",
    "position": "location",
    "where": "location",
    "region": "location",
    "severity": "severity",
    "level": "severity",
    "description": "description",
    "explanation": "description",
    "reason": "description",
    "reasoning": "description",
    "details": "description",
    "summary": "description",
}
VERDICT_WORDS: dict[str, ExplanationVerdict] = {
    "anomalous": "anomalous",
    "anomaly": "anomalous",
    "abnormal": "anomalous",
    "defective": "anomalous",
    "defect": "anomalous",
    "defected": "anomalous",
    "bad": "anomalous",
    "ng": "anomalous",
    "nok": "anomalous",
    "not ok": "anomalous",
    "fail": "anomalous",
    "failed": "anomalous",
    "reject": "anomalous",
    "true": "anomalous",
    "yes": "anomalous",
    "faulty": "anomalous",
    "damaged": "anomalous",
    "normal": "normal",
    "ok": "normal",
    "okay": "normal",
    "good": "normal",
    "pass": "normal",
    "passed": "normal",
    "accept": "normal",
    "no defect": "normal",
    "non-defective": "normal",
    "not defective": "normal",
    "false": "normal",
    "no": "normal",
    "clean": "normal",
    "flawless": "normal",
}
SEVERITY_WORDS: dict[str, Severity] = {
    "low": "low",
    "minor": "low",
    "slight": "low",
    "small": "low",
    "mild": "low",
    "light": "low",
    "medium": "medium",
    "moderate": "medium",
    "mid": "medium",
    "average": "medium",
    "high": "high",
    "severe": "high",
    "major": "high",
    "critical": "high",
    "serious": "high",
}
EMPTY_WORDS = {"", "none", "null", "n/a", "na", "nil", "-", "no defect", "nothing", "unknown"}

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_ ]*?)\s*:")
_LINE_FIELD = re.compile(
    r"^\W*(verdict|defect[_ ]type|location|severity|description)\W*\s*[:=]\s*(.+?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)


def _objects(text: str) -> list[str]:
    """Brace-balanced ``{...}`` spans (quotes respected); a truncated last one is closed."""
    found: list[str] = []
    start = text.find("{")
    while start != -1 and len(found) < MAX_CANDIDATES:
        depth, quote, escaped = 0, "", False
        end = -1
        for index in range(start, len(text)):
            char = text[index]
            if quote:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == quote:
                    quote = ""
            elif char in "\"'":
                quote = char
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    end = index
                    break
        if end == -1:
            # ran out of tokens mid-object: close what is open
            found.append(text[start:] + quote + "}" * max(depth, 1))
            break
        found.append(text[start : end + 1])
        start = text.find("{", end + 1)
    return found


def _load(candidate: str) -> dict[str, Any] | None:
    """JSON first, then lenient repairs (trailing commas, bare keys, Python literals)."""
    attempts = [candidate]
    repaired = _TRAILING_COMMA.sub(r"\1", candidate)
    attempts.append(repaired)
    attempts.append(_BARE_KEY.sub(lambda m: f'{m.group(1)}"{m.group(2).strip()}":', repaired))
    for attempt in attempts:
        try:
            value = json.loads(attempt)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    for attempt in attempts[1:]:
        python = re.sub(r"\btrue\b", "True", attempt)
        python = re.sub(r"\bfalse\b", "False", python)
        python = re.sub(r"\bnull\b", "None", python)
        try:
            value = ast.literal_eval(python)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_as_text(v)}" for k, v in value.items())
    return str(value).strip()[:MAX_FIELD_CHARS]


def _normalise_keys(raw: dict[Any, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        name = re.sub(r"[^a-z_]", "", str(key).lower().replace(" ", "_").replace("-", "_"))
        target = KEY_SYNONYMS.get(name)
        if target is not None and target not in fields:
            fields[target] = value
    return fields


def _word_lookup(value: str, table: dict[str, Any]) -> Any:
    text = value.lower().strip().strip(".!\"'")
    if text in table:
        return table[text]
    # longest phrase first so "not defective" wins over "defective"
    for word in sorted(table, key=len, reverse=True):
        if len(word) > 2 and re.search(rf"\b{re.escape(word)}\b", text):
            return table[word]
    return None


def _explanation(fields: dict[str, Any]) -> Explanation | None:
    defect_type = _as_text(fields.get("defect_type"))
    if defect_type.lower() in EMPTY_WORDS:
        defect_type = ""
    verdict = _word_lookup(_as_text(fields.get("verdict")), VERDICT_WORDS)
    if verdict is None:
        if not defect_type:
            return None
        verdict = "anomalous"
    description = _as_text(fields.get("description"))
    if verdict == "normal":
        return Explanation(verdict="normal", severity="low", description=description)
    location_text = _as_text(fields.get("location"))
    cell = masks.cell_from_words(location_text)
    location = masks.grid_words(cell) if cell is not None else location_text[:80]
    if location.lower() in EMPTY_WORDS:
        location = ""
    severity = _word_lookup(_as_text(fields.get("severity")), SEVERITY_WORDS) or "medium"
    return Explanation(
        verdict="anomalous",
        defect_type=defect_type[:80],
        location=location,
        severity=severity,
        description=description,
    )


def parse_explanation(text: object) -> Explanation | None:
    """The first readable explanation in ``text``, or None; never raises."""
    try:
        if not isinstance(text, str) or not text.strip():
            return None
        sources = [*_FENCE.findall(text), text]
        for source in sources:
            for candidate in _objects(source):
                raw = _load(candidate)
                if raw is None:
                    continue
                result = _explanation(_normalise_keys(raw))
                if result is not None:
                    return result
        lines = {m.group(1): m.group(2) for m in _LINE_FIELD.finditer(text)}
        if lines:
            return _explanation(_normalise_keys(lines))
        return None
    except Exception:  # the contract is "never raises": the caller falls back
        return None
