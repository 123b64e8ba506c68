"""``bench explain --types`` refuses what it cannot replay, in one line (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workstation.__main__ import main
from workstation.demo.generator import DemoSpec, generate


def _bench(*args: str) -> int:
    return main(["bench", "explain", "--maps", "0", "--vlm", "none", *args])


def test_bad_datasets_and_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _bench("--types", str(tmp_path / "missing")) == 2
    assert "no dataset folder" in capsys.readouterr().err
    assert _bench("--types", "demo", "--shots", "0") == 2
    root = generate(tmp_path, DemoSpec(size=64, train_good=2, test_good=1, per_defect=1)).root
    for kind in ("pit", "crack", "stain", "missing_material"):
        for path in (root / "test" / kind).glob("*.png"):
            path.unlink()
    assert _bench("--types", str(root)) == 2
    assert "at least two types" in capsys.readouterr().err
