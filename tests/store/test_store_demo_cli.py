"""The demo generator and the import / export / demo commands end to end."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from store_helpers import make_mvtec

from workstation.__main__ import main
from workstation.core.imageio import read_image, read_mask
from workstation.demo.generator import (
    DEFECT_TYPES,
    PRODUCT_NAME,
    DemoSpec,
    generate,
    render_pair,
)
from workstation.paths import demo_db_path
from workstation.store.repository import Store

SMALL = DemoSpec(size=96, train_good=3, test_good=2, per_defect=1, seed=11)


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_generator_is_deterministic_and_in_mvtec_layout(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", SMALL)
    second = generate(tmp_path / "b", SMALL)
    assert digest(first.root) == digest(second.root)
    assert (first.root / "product.json").is_file()
    for defect in DEFECT_TYPES:
        image = read_image(first.root / "test" / defect / "000.png")
        mask = read_mask(
            first.root / "ground_truth" / defect / "000_mask.png", expected_shape=image.shape[:2]
        )
        assert image.shape == (96, 96, 3) and mask.sum() >= 6
    assert len(list((first.root / "train" / "good").glob("*.png"))) == 3


@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_defect_masks_are_exactly_the_changed_pixels(defect: str) -> None:
    spec = DemoSpec(size=128, seed=5)
    for seed in range(3):
        clean, image, mask = render_pair(np.random.default_rng(seed), spec, defect)
        assert mask is not None and mask.dtype == np.uint8
        changed = np.any(clean != image, axis=2)
        assert np.array_equal(changed, mask.astype(bool))


def test_demo_headless_prints_counts_and_reuses_the_store(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--headless", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert PRODUCT_NAME in out and "train" in out and "scratch" in out
    assert "total 90 images, 30 with ground-truth masks" in out
    assert demo_db_path().is_file()
    assert main(["demo", "--headless", "--size", "64"]) == 0  # reuse: nothing new
    with Store.open(demo_db_path()) as store:
        assert len(store.list_images(store.get_product(PRODUCT_NAME).id)) == 90
    assert main(["demo", "--headless", "--size", "64", "--regenerate"]) == 0


def test_import_and_export_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_mvtec(tmp_path / "bottle")
    (root / "train" / "good" / "broken.png").write_bytes(b"")
    db = tmp_path / "cli.sqlite"
    assert main(["import", str(root), "--db", str(db)]) == 0
    captured = capsys.readouterr()
    assert "bottle (mvtec): 7 new" in captured.out
    assert "broken.png" in captured.err and "empty" in captured.err
    assert main(["--db", str(db), "import", str(root)]) == 0  # root-level --db works too
    assert "0 new, 7 already" in capsys.readouterr().out
    for fmt in ("mvtec", "coco", "jsonl"):
        out = tmp_path / f"out-{fmt}"
        assert (
            main(["export", "--product", "bottle", "--format", fmt, str(out), "--db", str(db)]) == 0
        )
    assert (tmp_path / "out-mvtec" / "bottle" / "ground_truth" / "scratch").is_dir()
    assert (tmp_path / "out-coco" / "annotations.json").is_file()


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nothing here").mkdir()
    db = str(tmp_path / "x.sqlite")
    assert main(["import", str(tmp_path / "nothing here"), "--db", db]) == 2
    assert "not a known dataset layout" in capsys.readouterr().err
    assert main(["export", "--product", "nope", str(tmp_path / "o"), "--db", db]) == 2
    assert "no product 'nope'" in capsys.readouterr().err
    assert (
        main(
            [
                "export",
                "--product",
                "x",
                str(tmp_path / "o"),
                "--db",
                str(tmp_path / "missing.sqlite"),
            ]
        )
        == 2
    )
    assert "no store" in capsys.readouterr().err


def test_progress_bar_writes_a_final_line_when_not_a_terminal() -> None:
    import io

    from workstation.cli.progress import progress_bar

    stream = io.StringIO()
    update = progress_bar(0, "importing", stream=stream)
    for done in range(1, 6):
        update(done, 5)
    lines = stream.getvalue().splitlines()
    assert lines == [lines[-1]] and lines[-1].startswith("importing [") and "5/5" in lines[-1]
