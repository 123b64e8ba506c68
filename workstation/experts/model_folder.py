"""Reading the JSON config of a trained model folder, one way for every trained kind.

A folder is recognised by its config file and a format string; the format guards
compatibility, so keys a newer writer added under the same format are ignored (they carry
nothing this reader could use), while a missing file, unreadable JSON, another format or
values the config refuses are one-line errors of the kind's own type that say what to do.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def read_model_config(
    folder: Path,
    cls: type[T],
    *,
    file: str,
    format: str,
    label: str,
    error: type[Exception],
) -> T:
    """``cls`` from ``folder/file``; ``label`` names the kind in messages ("adapter")."""
    path = Path(folder) / file
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{folder} is not {_article(label)} {label} model folder (no {file})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{label} config {path} is unreadable: {exc}") from None
    found = raw.get("format") if isinstance(raw, dict) else None
    if found != format:
        raise error(f"{path} has format {found!r}, not {format!r}; train a new {label} round")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in raw.items() if k in known})
    except (TypeError, ValueError, IndexError) as exc:
        raise error(f"{label} config {path} is damaged: {exc}") from None


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
