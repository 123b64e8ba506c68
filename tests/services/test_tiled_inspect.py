"""A very large image in a product is scored in tiles through ``inspect`` and stored like
any other; one above the pixel limit is refused with one line; a damaged one is named.

The size rule is lowered for the test (``large_scoring.LARGE_PIXELS``): a 480 x 480 scan
stands in for a 20000 x 20000 one, and the product's shots are 192 px crops of normal
scans, cut at random places as an engineer would cut them from a real scan.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from synthetic_parts import textured

from workstation.__main__ import main
from workstation.config import ExpertSettings
from workstation.core import untrusted
from workstation.core.errors import CancelledError, UserError
from workstation.core.imageio import write_png
from workstation.services import large_scoring, onboard
from workstation.services.inspect import inspect_product
from workstation.services.triage import triage_product
from workstation.store.repository import Store

SETTINGS = ExpertSettings(image_size=96, target_false_positive_rate=0.2)
SIDE = 480
SHOT = 192
DEFECT = (300, 140)
SMALL_RULE = 100_000
"""Pixels above which the test scores in tiles (the 480 px scan: 230,400)."""


@pytest.fixture(autouse=True)
def small_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(large_scoring, "LARGE_PIXELS", SMALL_RULE)


def add(store: Store, product_id: int, path: Path, split: str, label: str | None) -> int:
    from PIL import Image

    with Image.open(path) as img:
        width, height = img.size
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    record, _ = store.add_image(
        product_id, path=path, sha256=digest, width=width, height=height,
        split=split, source_label=label,  # type: ignore[arg-type]
    )
    return record.id


def write_scan(path: Path) -> Path:
    image = textured(1, SIDE)
    cv2.circle(image, DEFECT, 5, (90, 80, 90), -1)
    write_png(path, image)
    return path


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    """Six normal shots and one other small image of product ``plate``."""
    store = Store.open(tmp_path / "db.sqlite")
    product = store.create_product("plate")
    rng = np.random.default_rng(0)
    for index in range(6):
        scan = textured(100 + index, SIDE)
        y, x = rng.integers(0, SIDE - SHOT, 2)
        write_png(tmp_path / f"n{index}.png", scan[y : y + SHOT, x : x + SHOT])
        add(store, product.id, tmp_path / f"n{index}.png", "train", "good")
    yield store
    store.close()


def never_decode(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Fail if the app decodes ``path`` itself (only the pyramid's child may)."""
    for module in (large_scoring, onboard):
        real = module.read_image

        def guarded(p: object, *a: object, real: object = real, **k: object) -> np.ndarray:
            assert Path(str(p)) != path, f"{path} was decoded whole in the app"
            return real(p, *a, **k)  # type: ignore[operator]

        monkeypatch.setattr(module, "read_image", guarded)


def test_a_large_image_is_scored_in_tiles_stored_and_drafted(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    product = store.get_product("plate")
    scan_id = add(store, product.id, write_scan(tmp_path / "scan.png"), "unlabeled", None)
    never_decode(monkeypatch, tmp_path / "scan.png")
    tiles: list[tuple[int, int, str]] = []
    report = triage_product(
        store, "plate", SETTINGS, progress=lambda d, t, stage: tiles.append((d, t, stage))
    )
    assert report.inspection.predicted == 7 and not report.inspection.failed
    tile_calls = [(d, t) for d, t, stage in tiles if "tiles" in stage]
    assert tile_calls and tile_calls[-1][0] == tile_calls[-1][1] > 1  # every tile heard
    prediction = store.latest_prediction(scan_id)
    assert prediction is not None and prediction.anomalous and prediction.score > 1.0
    stored = store.load_map(prediction)
    assert max(stored.shape) <= 2048 and stored.shape == (SIDE, SIDE)  # one level here
    peak = np.unravel_index(int(np.argmax(stored)), stored.shape)
    assert abs(peak[0] - DEFECT[1]) < 24 and abs(peak[1] - DEFECT[0]) < 24
    assert prediction.expert_scores["fewshot"] > 0
    # the pyramid stays beside the store for the review window; a draft was written
    record = store.get_image(scan_id)
    assert (Path(f"{store.path}.tiles") / record.sha256 / "complete").is_file()
    assert store.latest_explanation(scan_id) is not None


def test_cancelling_inside_a_large_image_stores_nothing_for_it(
    store: Store, tmp_path: Path
) -> None:
    product = store.get_product("plate")
    scan_id = add(store, product.id, write_scan(tmp_path / "scan.png"), "unlabeled", None)
    cancel = threading.Event()

    def stop(done: int, total: int) -> None:
        if done >= 1:
            cancel.set()

    with pytest.raises(CancelledError):
        inspect_product(store, "plate", SETTINGS, cancel=cancel, tile_progress=stop)
    assert store.latest_prediction(scan_id) is None
    cancel.clear()
    resumed = inspect_product(store, "plate", SETTINGS)
    assert resumed.predicted == 7 and store.latest_prediction(scan_id) is not None


def test_an_image_over_the_limit_is_refused_in_one_line_and_nothing_is_lost(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    product = store.get_product("plate")
    scan_id = add(store, product.id, write_scan(tmp_path / "scan.png"), "unlabeled", None)
    before = (tmp_path / "scan.png").read_bytes()
    # imported under the old limit; the setting was lowered since
    monkeypatch.setattr(untrusted, "_current", untrusted.with_limits(image_pixels=200_000))
    report = inspect_product(store, "plate", SETTINGS)
    assert report.predicted == 6
    ((failed_id, reason),) = report.failed
    assert failed_id == scan_id and "\n" not in reason
    assert "480x480 pixels is more than the limit of 0.2 megapixels" in reason
    assert "max_image_megapixels" in reason
    assert store.latest_prediction(scan_id) is None
    assert (tmp_path / "scan.png").read_bytes() == before
    assert not Path(f"{store.path}.tiles").exists()  # refused before any pyramid


def test_a_truncated_large_image_gets_a_clear_error(store: Store, tmp_path: Path) -> None:
    product = store.get_product("plate")
    scan = write_scan(tmp_path / "scan.png")
    scan_id = add(store, product.id, scan, "unlabeled", None)
    scan.write_bytes(scan.read_bytes()[: scan.stat().st_size // 2])
    report = inspect_product(store, "plate", SETTINGS)
    assert report.predicted == 6
    ((failed_id, reason),) = report.failed
    assert failed_id == scan_id
    assert reason.startswith("could not prepare the tiles of scan.png")
    assert "truncated" in reason and "\n" not in reason
    record = store.get_image(scan_id)
    assert not (Path(f"{store.path}.tiles") / record.sha256 / "complete").exists()


def test_the_pyramid_child_is_told_the_raised_limit(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A limit raised in the settings lets a scan through in the child process too, and a
    lowered one refuses there what the parent refuses."""
    from workstation.core import raster

    scan = write_scan(tmp_path / "scan.png")
    monkeypatch.setattr(untrusted, "_current", untrusted.with_limits(image_pixels=200_000))
    with pytest.raises(UserError, match=r"more than the limit of 0\.2 megapixels"):
        raster.ensure_raster(scan, tmp_path / "low")
    monkeypatch.setattr(untrusted, "_current", untrusted.with_limits(image_pixels=300_000))
    assert raster.ensure_raster(scan, tmp_path / "high").size == (SIDE, SIDE)


def test_inspect_cli_scores_a_large_file_in_tiles_and_refuses_one_over_the_limit(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], _isolated_home: Path
) -> None:
    store.close()
    (_isolated_home / "config.toml").write_text(
        "[experts]\nimage_size = 96\ntarget_false_positive_rate = 0.2\n"
    )
    scan = write_scan(tmp_path / "scan.png")
    db = str(tmp_path / "db.sqlite")
    assert main(["--db", db, "inspect", str(scan), "--product", "plate", "--json"]) == 0
    captured = capsys.readouterr()
    assert f"[1/1] {scan}: 480x480 px, scoring in tiles" in captured.err
    assert "scan.png: tiles [" in captured.err  # a progress bar over the tiles
    (row,) = json.loads(captured.out)
    assert row["verdict"] == "anomalous" and row["tiles"] > 1
    x0, y0, x1, y1 = max(row["regions"], key=lambda box: (box[2] - box[0]) * (box[3] - box[1]))
    assert x0 <= DEFECT[0] < x1 and y0 <= DEFECT[1] < y1
    assert list(Path(f"{db}.tiles").iterdir()) == []  # the scratch pyramid is gone
    (_isolated_home / "config.toml").write_text("[limits]\nmax_image_megapixels = 0.2\n")
    assert main(["--db", db, "inspect", str(scan), "--product", "plate"]) == 1
    captured = capsys.readouterr()
    assert f"[1/1] {scan}: refused" in captured.err
    assert "480x480 pixels is more than the limit of 0.2 megapixels" in captured.err
    assert "Traceback" not in captured.err
