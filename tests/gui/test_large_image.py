"""A scan too large to decode in the app: viewed by level-of-detail tiles from its pyramid,
read for the experts from a reduced level; the app never decodes it whole.

The size rule is lowered for the test (LARGE_PIXELS), so a 5000 x 4000 image stands in
for a 20000 x 20000 scan and the test stays quick.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from workstation.core import imageio
from workstation.core.imageio import write_png
from workstation.core.raster import open_raster, tiles_folder
from workstation.gui import tiled_view
from workstation.services import onboard

W, H = 5000, 4000
SMALL_RULE = 1_000_000


@pytest.fixture
def scan_store(tmp_path: Path) -> Path:
    from workstation.store.repository import Store

    image = np.full((H, W, 3), 120, np.uint8)
    image[:, :, 1] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]  # where am I, in colour
    cv2.circle(image, (4200, 3300), 60, (20, 20, 20), -1)
    path = tmp_path / "scan.png"
    write_png(path, image)
    db = tmp_path / "store.sqlite"
    with Store.open(db) as store:
        product = store.create_product("scan")
        store.update_product(product.id, threshold=1.0)
        record, _ = store.add_image(
            product.id,
            path=str(path),
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            width=W,
            height=H,
            split="test",
            source_label=None,
        )
        heat = np.zeros((H // 8, W // 8), np.float32)
        cv2.circle(heat, (4200 // 8, 3300 // 8), 10, 2.0, -1)
        store.add_prediction(
            record.id, model_version="experts-1", score=2.0, anomalous=True, anomaly_map=heat
        )
    return db


def test_a_huge_scan_is_viewed_by_tiles_and_never_decoded_whole(
    qtbot, scan_store, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.app import build_workstation
    from workstation.gui.launch import application
    from workstation.gui.main_window import MainWindow

    monkeypatch.setattr(tiled_view, "LARGE_PIXELS", SMALL_RULE)
    decoded: list[str] = []
    real_read = imageio.read_image

    def guarded_read(path, **kwargs):  # type: ignore[no-untyped-def]
        decoded.append(str(path))
        return real_read(path, **kwargs)

    monkeypatch.setattr(imageio, "read_image", guarded_read)
    application()
    ws = build_workstation(scan_store)
    window = MainWindow(ws)
    qtbot.addWidget(window)
    window.resize(1366, 768)
    window.show()
    qtbot.waitUntil(lambda: window.controller.current is not None, timeout=60000)
    assert not [p for p in decoded if p.endswith("scan.png")]  # built by the child process
    canvas = window.canvas
    content = canvas.content
    assert isinstance(content.rgb, np.memmap) and content.raster is not None
    assert content.tiles == [] and content.size == (W, H)
    item = canvas.tiled_item
    canvas.viewport().repaint()
    assert item.last_level >= 2  # the whole scan fitted: a reduced level
    fitted_reads = item.tiles_read
    assert 0 < fitted_reads <= 8
    canvas.one_to_one()
    canvas.centerOn(3900, 3300)  # beside the dark spot
    canvas.viewport().repaint()
    assert item.last_level == 0
    view = canvas.viewport().size()
    visible = (view.width() // 512 + 2) * (view.height() // 512 + 2)
    assert 0 < item.tiles_read - fitted_reads <= visible  # only what is on screen
    # the tiles are the image's pixels: the gradient's green at the view's centre
    window.toolbar.heatmap.setChecked(False)
    canvas.viewport().repaint()
    centre = canvas.mapToScene(canvas.viewport().rect().center())
    grabbed = canvas.viewport().grab().toImage()
    pixel = grabbed.pixelColor(canvas.viewport().rect().center())
    expected = int(np.linspace(0, 255, W, dtype=np.uint8)[int(centre.x())])
    assert abs(pixel.green() - expected) <= 12 and abs(pixel.red() - 120) <= 12
    window.close()
    ws.close()


def test_the_experts_read_a_huge_scan_from_a_reduced_level(scan_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from workstation.store.repository import Store

    monkeypatch.setattr(onboard, "LARGE_PIXELS", SMALL_RULE)
    with Store.open(scan_store) as store:
        (record,) = store.list_images(store.get_product("scan").id)
        image = onboard.read_for_experts(store, record, 512)
        raster = open_raster(tiles_folder(store.path, record.sha256))
    assert raster is not None and len(raster.levels) == 3  # 5000 -> 2500 -> 1250
    side = onboard.fit_read_side(record, 512)
    assert max(image.shape[:2]) >= side and max(image.shape[:2]) < W  # reduced, not whole
    assert image.shape[:2] == raster.levels[2].shape[:2]  # the coarsest that is enough
