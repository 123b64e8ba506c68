"""The development-suite converter writes MVTec layouts the evaluation reads, from tiny
synthetic clones of each source repository's layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workstation.core.errors import UserError
from workstation.datasets.devsuite import SplitCaps, build
from workstation.datasets.devsuite.__main__ import main
from workstation.datasets.mvtec import load_category


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _magnetic_tile(root: Path, rng: np.random.Generator) -> None:
    for i in range(6):
        _save(root / "MT_Free/Imgs" / f"free{i}.jpg", rng.integers(0, 255, (40, 30), np.uint8))
        _save(root / "MT_Free/Imgs" / f"free{i}.png", np.zeros((40, 30), np.uint8))
    for kind in ("MT_Crack", "MT_Fray"):
        for i in range(3):
            # one very large image: the converter must scale it (and its mask) down
            h, w = (900, 600) if i == 0 else (40, 30)
            mask = np.zeros((h, w), np.uint8)
            mask[h // 3 : h // 2, w // 3 : w // 2] = 255
            _save(root / kind / "Imgs" / f"{kind}{i}.jpg", rng.integers(0, 255, (h, w), np.uint8))
            _save(root / kind / "Imgs" / f"{kind}{i}.png", mask)


def _deeppcb(root: Path, rng: np.random.Generator) -> None:
    images = root / "PCBData/group00001/00001"
    for i in range(6):
        pair = f"00001{i:03d}"
        _save(images / f"{pair}_temp.jpg", rng.integers(0, 255, (64, 64), np.uint8))
        _save(images / f"{pair}_test.jpg", rng.integers(0, 255, (64, 64), np.uint8))
        (root / "PCBData/group00001/00001_not").mkdir(parents=True, exist_ok=True)
        kind = 1 + i % 2
        (root / "PCBData/group00001/00001_not" / f"{pair}.txt").write_text(
            f"10 10 20 20 {kind}\n30 30 40 44 {kind}\n5,5,8,8,3\n"
        )


def _crackforest(root: Path, rng: np.random.Generator) -> None:
    for n in ("001", "002", "003", "004"):
        _save(root / "image" / f"{n}.jpg", rng.integers(0, 255, (320, 480, 3), np.uint8))
        # a crack along rows 8-12 of the first tile row, columns 0..259: tiles r0c0, r0c1
        crack = range(8, 13)
        runs = [f"0 {r} 0 479" for r in range(320) if r not in crack]
        runs += [f"1 {r} 0 259\n0 {r} 260 479" for r in crack]
        (root / "seg").mkdir(parents=True, exist_ok=True)
        (root / "seg" / f"{n}.seg").write_text(
            "format ascii cr\nwidth 480\nheight 320\nsegments 2\ndata\n" + "\n".join(runs) + "\n"
        )


def _kolektor(root: Path, rng: np.random.Generator) -> None:
    for i in range(8):
        split = "train" if i < 6 else "val"
        _save(
            root / "Datasets/images" / split / f"{i:03d}.jpg",
            rng.integers(0, 255, (60, 24), np.uint8),
        )
        # parts 1, 4 and 7 are cracked: a thin triangle across the middle of the part
        polygon = "0 0.1 0.5 0.9 0.5 0.9 0.55\n" if i % 3 == 1 else ""
        (root / "Datasets/labels" / split).mkdir(parents=True, exist_ok=True)
        (root / "Datasets/labels" / split / f"{i:03d}.txt").write_text(polygon)


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "sources"
    _magnetic_tile(root / "Magnetic-tile-defect-datasets.", rng)
    _deeppcb(root / "DeepPCB", rng)
    _crackforest(root / "CrackForest-dataset", rng)
    _kolektor(root / "KolektorSDD_Yolov8_Datasets", rng)
    return root


def test_every_set_is_a_readable_mvtec_category(sources: Path, tmp_path: Path) -> None:
    caps = SplitCaps(train_cap=3, test_good_cap=2, test_defect_cap=4, max_side=64)
    written = build(sources, tmp_path / "out", caps=caps)
    names = ["magnetic_tile", "deeppcb", "crackforest", "kolektor"]
    assert [w.category.parent.name for w in written] == names
    for w in written:
        category = load_category(w.category)
        assert len(category.train) == w.train == 3
        defects = [i for i in category.test if i.anomalous]
        assert len(defects) == sum(w.test_defect.values()) <= 4
        assert defects and all(i.mask_path is not None for i in defects)
        for item in defects:
            with Image.open(item.path) as im, Image.open(item.mask_path) as mask:
                assert im.size == mask.size and max(im.size) <= 64
                assert np.asarray(mask).max() == 255
        assert (w.category.parent / "README.md").read_text().count("Licence") == 1
    # types are taken round-robin: both magnetic-tile types and both PCB types appear
    assert set(written[0].test_defect) == {"crack", "fray"}
    assert set(written[1].test_defect) == {"open", "short"}
    ready = (tmp_path / "out" / "READY").read_text().splitlines()
    assert [line.split("\t")[0] for line in ready] == names
    # the polygon became a thin horizontal mask across the middle of the cracked part
    cracked = [i for i in load_category(written[3].category).test if i.anomalous]
    with Image.open(cracked[0].mask_path) as mask:
        rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    assert len(rows) <= 6 and abs(rows.mean() / mask.height - 0.52) < 0.1


def test_building_one_set_keeps_the_others_listed(sources: Path, tmp_path: Path) -> None:
    caps = SplitCaps(train_cap=2, test_good_cap=2, test_defect_cap=2, max_side=64)
    build(sources, tmp_path / "out", ("deeppcb", "kolektor"), caps)
    build(sources, tmp_path / "out", ("kolektor",), caps)
    ready = (tmp_path / "out" / "READY").read_text().splitlines()
    assert [line.split("\t")[0] for line in ready] == ["deeppcb", "kolektor"]


def test_split_keeps_a_source_image_on_one_side(sources: Path, tmp_path: Path) -> None:
    caps = SplitCaps(train_cap=2, test_good_cap=50, test_defect_cap=50)
    (w,) = build(sources, tmp_path / "out", ("crackforest",), caps)
    category = load_category(w.category)
    photo = {i.path.stem.split("_")[0] for i in category.train}
    assert photo.isdisjoint({i.path.stem.split("_")[0] for i in category.test})
    # two crack tiles per photo, the four other tiles are normal
    assert w.test_defect == {"crack": 2 * (4 - len(photo))}


def test_a_missing_clone_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "build",
            "--sources",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "o"),
            "--only",
            "deeppcb",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no clone of") and "\n" not in err


def test_a_damaged_source_image_is_a_one_line_error(
    sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (sources / "CrackForest-dataset" / "image" / "002.jpg").write_bytes(b"not a jpeg")
    code = main(
        ["build", "--sources", str(sources), "--out", str(tmp_path / "o"), "--only", "crackforest"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot read") and "002.jpg" in err and "\n" not in err


@pytest.mark.parametrize("side", [0, -5, 8])
def test_a_max_side_that_would_erase_thin_masks_is_refused(side: int, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="too small"):
        SplitCaps(max_side=side)
    assert main(["build", "--sources", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--max-side", str(side)]) == 2
    assert not (tmp_path / "o").exists()
