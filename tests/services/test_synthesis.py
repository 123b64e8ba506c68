"""``synth`` and ``services.synthesis``: a product's synthetic defects written in MVTec
layout, every painted image with its exact mask, and bad requests refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_helpers import make_mvtec

from workstation.__main__ import main
from workstation.core.errors import UserError
from workstation.core.imageio import read_image, read_mask
from workstation.datasets.layouts import plan_import
from workstation.services.importing import import_directory
from workstation.services.synthesis import write_synthetic_examples
from workstation.store.repository import Store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "ws.sqlite"
    with Store.open(path) as store:
        import_directory(store, make_mvtec(tmp_path / "data" / "plate", train=4), product="plate")
    return path


def test_painted_defects_come_with_their_masks_in_an_importable_layout(
    db: Path, tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []
    with Store.open(db) as store:
        summary = write_synthetic_examples(
            store, "plate", tmp_path / "out", count=10, image_size=64, seed=3,
            progress=lambda done, total: seen.append((done, total)),
        )
    root = tmp_path / "out" / "plate"
    assert summary.root == root and sum(summary.counts.values()) == 10
    assert seen[-1] == (10, 10) and len(seen) == 10
    assert len(list((root / "train" / "good").glob("*.png"))) == 4  # the normals as donors
    for family, written in summary.counts.items():
        images = sorted((root / "test" / family).glob("*.png"))
        assert len(images) == written
        if family == "good":  # a painter that left nothing visible
            continue
        for image_path in images:
            mask = read_mask(root / "ground_truth" / family / f"{image_path.stem}_mask.png")
            assert mask.any() and mask.shape == read_image(image_path).shape[:2]
    # The folder is a dataset the app can import and evaluate on.
    plan = plan_import(root)[0]
    assert len(plan.items) == 10 + 4


def test_same_seed_paints_the_same_defects(db: Path, tmp_path: Path) -> None:
    with Store.open(db) as store:
        for out in ("a", "b"):
            write_synthetic_examples(store, "plate", tmp_path / out, count=4, image_size=64)
    first = sorted((tmp_path / "a" / "plate" / "test").rglob("*.png"))
    second = sorted((tmp_path / "b" / "plate" / "test").rglob("*.png"))
    assert [p.relative_to(tmp_path / "a") for p in first] == [
        p.relative_to(tmp_path / "b") for p in second
    ]
    pairs = zip(first, second, strict=True)
    assert all(np.array_equal(read_image(a), read_image(b)) for a, b in pairs)


def test_a_product_without_normals_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "ws.sqlite") as store:
        store.create_product("empty")
        with pytest.raises(UserError, match="no normal images to paint defects into"):
            write_synthetic_examples(store, "empty", tmp_path / "out", count=2)
    assert not (tmp_path / "out").exists()


def test_synth_command_writes_and_reports(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "look"
    assert main(["synth", str(out), "--product", "plate", "--count", "3", "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    assert f"3 synthetic defects written to {out / 'plate'}" in printed
    assert len(list((out / "plate" / "test").rglob("*.png"))) == 3


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--count", "0"], "--count must be at least 1"),
        (["--families", "scratch,rust"], "unknown synthetic defect"),
        (["--product", "nope"], "nope"),
    ],
)
def test_synth_refuses_bad_requests_in_one_line(
    arguments: list[str], message: str, db: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["synth", str(tmp_path / "x"), "--product", "plate", "--db", str(db), *arguments]
    if "--product" in arguments:
        argv[2:4] = []
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert not (tmp_path / "x").exists()


def test_synth_without_a_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.sqlite"
    assert main(["synth", str(tmp_path / "x"), "--product", "p", "--db", str(missing)]) == 2
    assert "no store at" in capsys.readouterr().err
