"""Import directions from the design map, checked on the source text (no escape hatches).

The domain core must never import Qt, and ``training`` must never import the GUI; any
``import`` statement anywhere in those files counts, also inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QT_MODULES = ("PySide6", "pyqtgraph", "shiboken6", "workstation.gui")
HEAVY_MODULES = ("torch", "transformers", "open_clip", "peft", "torchvision")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(*parts: str) -> list[Path]:
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


def offending(path: Path, banned: tuple[str, ...]) -> list[str]:
    return sorted(
        name
        for name in imported_modules(path)
        if any(name == b or name.startswith(b + ".") for b in banned)
    )


QT_FREE = [
    ("workstation", "core"),
    ("workstation", "pretrained"),
    ("workstation", "store"),
    ("workstation", "experts"),
    ("workstation", "explain"),
    ("workstation", "active"),
    ("workstation", "datasets"),
    ("workstation", "services"),
    ("workstation", "sync"),
    ("training",),
]


@pytest.mark.parametrize("parts", QT_FREE, ids=lambda p: "/".join(p))
def test_domain_never_imports_qt(parts: tuple[str, ...]) -> None:
    bad = {str(p.relative_to(ROOT)): offending(p, QT_MODULES) for p in python_files(*parts)}
    assert {k: v for k, v in bad.items() if v} == {}


def test_core_has_no_heavy_imports_at_module_level() -> None:
    for path in python_files("workstation", "core"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert not any(
                    (mod or "").startswith(h) for h in HEAVY_MODULES
                ), f"{path} imports {mod} at module level"


def test_sql_stays_in_store() -> None:
    for path in python_files("workstation") + python_files("training"):
        if "store" in path.relative_to(ROOT).parts:
            continue
        assert "sqlite3" not in imported_modules(path), path
        assert "sqlite_utils" not in imported_modules(path), path


def test_every_folder_of_code_is_a_regular_package() -> None:
    """A folder without ``__init__.py`` is a namespace package, which import-linter's
    graph leaves out: its imports would escape the layer contract unseen."""
    for package in ("workstation", "training"):
        folders = {p.parent for p in python_files(package)}
        missing = [f for f in folders if not (f / "__init__.py").is_file()]
        assert sorted(str(f.relative_to(ROOT)) for f in missing) == []
