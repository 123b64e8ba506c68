"""Dataclasses from mappings that refuse what they do not know.

Hyperparameters arrive from the CLI, the GUI, settings files and saved round manifests.
A mistyped key (``step`` for ``steps``) silently dropped would train with the default and
nobody would notice, so every ``from_dict`` goes through :func:`from_dict`, which names
the unknown key and the known ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

from workstation.core.errors import UserError

T = TypeVar("T")


def from_dict(cls: type[T], values: Mapping[str, Any], what: str = "") -> T:
    """``cls(**values)``, refusing any key that is not one of the dataclass's fields."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    known = [f.name for f in fields(cls)]
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        label = what or cls.__name__
        raise UserError(
            f"unknown {label} setting {unknown[0]!r}"
            + (f" (and {', '.join(map(repr, unknown[1:]))})" if len(unknown) > 1 else "")
            + f"; known: {', '.join(known)}"
        )
    return cls(**values)
