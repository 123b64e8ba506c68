"""Keyboard bindings: one key per review action, rebindable, stored in the store's app state.

Keeping the bindings in the store (not QSettings) means a workstation database carries its
inspector's habits with it, and tests see exactly what the settings dialog wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SHORTCUTS_STATE_KEY = "gui.shortcuts"


@dataclass(frozen=True)
class ActionSpec:
    id: str
    label: str
    keys: tuple[str, ...]
    group: str


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("accept", "Accept the model's verdict and mask", ("A",), "Review"),
    ActionSpec("normal", "Mark normal (false alarm)", ("N",), "Review"),
    ActionSpec("anomalous", "Mark anomalous (as corrected)", ("D",), "Review"),
    ActionSpec("skip", "Skip", ("S",), "Review"),
    ActionSpec("inspect", "Inspect images not scored yet", ("I",), "Review"),
    ActionSpec("next", "Next image", ("J", "Right", "Down"), "Review"),
    ActionSpec("previous", "Previous image", ("K", "Left", "Up"), "Review"),
    ActionSpec("brush", "Brush", ("B",), "Mask"),
    ActionSpec("eraser", "Eraser", ("E",), "Mask"),
    ActionSpec("polygon", "Polygon fill (Enter closes)", ("P",), "Mask"),
    ActionSpec("lasso", "Lasso fill", ("L",), "Mask"),
    ActionSpec("fill", "Flood fill similar colour", ("F",), "Mask"),
    ActionSpec("pan", "Pan tool (or hold Space)", ("V",), "Mask"),
    ActionSpec("smaller", "Smaller brush", ("[",), "Mask"),
    ActionSpec("bigger", "Bigger brush", ("]",), "Mask"),
    ActionSpec("from_heatmap", "Mask from heatmap at threshold", ("X",), "Mask"),
    ActionSpec("clear_mask", "Clear mask", ("Shift+Del",), "Mask"),
    ActionSpec("undo", "Undo", ("Ctrl+Z",), "Mask"),
    ActionSpec("redo", "Redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Mask"),
    ActionSpec("toggle_heatmap", "Show / hide heatmap", ("H",), "View"),
    ActionSpec("heat_opacity", "Cycle heatmap opacity", ("O",), "View"),
    ActionSpec("colormap", "Next colormap", ("C",), "View"),
    ActionSpec("toggle_mask", "Show / hide mask", ("M",), "View"),
    ActionSpec("toggle_reference", "Show / hide normal reference", ("R",), "View"),
    ActionSpec("fit", "Fit to window", ("0",), "View"),
    ActionSpec("one_to_one", "Actual pixels (1:1)", ("1",), "View"),
    ActionSpec("focus_text", "Edit explanation text", ("T",), "View"),
    ActionSpec("redraft", "Write a new model draft (explainer)", ("W",), "View"),
    ActionSpec("cheat_sheet", "Keyboard cheat sheet", ("?", "F1"), "Help"),
)
ACTION_IDS = tuple(a.id for a in ACTIONS)


def default_bindings() -> dict[str, tuple[str, ...]]:
    return {a.id: a.keys for a in ACTIONS}


def load_bindings(store: Any) -> dict[str, tuple[str, ...]]:
    """Defaults overlaid with what the inspector rebound; unknown or broken entries are ignored."""
    bindings = default_bindings()
    raw = store.get_state(SHORTCUTS_STATE_KEY) if store is not None else None
    if not raw:
        return bindings
    try:
        saved = json.loads(raw)
    except json.JSONDecodeError:
        return bindings
    if isinstance(saved, dict):
        for action, keys in saved.items():
            if (
                action in bindings
                and isinstance(keys, list)
                and all(isinstance(k, str) for k in keys)
            ):
                bindings[action] = tuple(keys)
    return bindings


def save_bindings(store: Any, bindings: dict[str, tuple[str, ...]]) -> None:
    changed = {k: list(v) for k, v in bindings.items() if default_bindings().get(k) != tuple(v)}
    store.set_state(SHORTCUTS_STATE_KEY, json.dumps(changed, sort_keys=True))


def conflicts(bindings: dict[str, tuple[str, ...]]) -> list[str]:
    """Human-readable list of keys bound to more than one action."""
    seen: dict[str, str] = {}
    problems = []
    for action, keys in bindings.items():
        for key in keys:
            normal = key.strip().lower()
            if not normal:
                continue
            if normal in seen:
                problems.append(f"{key} is bound to both {seen[normal]} and {action}")
            else:
                seen[normal] = action
    return problems
