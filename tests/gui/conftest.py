"""GUI fixtures: a small generated store, the window on it, and screenshots on request.

Screenshots go to the folder named by ``IAD_SCREENSHOTS`` (nothing is written without it).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from workstation.core.imageio import write_png
from workstation.core.types import Explanation

H, W = 96, 128


def make_image(rng: np.random.Generator, *, defect: bool) -> np.ndarray:
    base = np.full((H, W, 3), 150, np.uint8)
    noise = rng.normal(0, 6, (H, W, 3))
    image = np.clip(base + noise, 0, 255).astype(np.uint8)
    cv2.rectangle(image, (20, 20), (108, 76), (90, 95, 100), 2)
    if defect:
        cv2.line(image, (40, 40), (80, 60), (30, 20, 20), 3)
    return image


def build_store(path: Path, folder: Path, *, count: int = 12, seed: int = 0) -> Path:
    """A product with normals, scored test images (maps, template drafts) and a threshold."""
    from workstation.store.repository import Store

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    store = Store.open(path)
    try:
        product = store.create_product(
            "widget",
            description="machined aluminium widget",
            normality_rules=("the frame is a closed rectangle",),
            defect_vocabulary=("scratch", "dent"),
        )
        store.update_product(product.id, threshold=1.0)
        for i in range(count):
            defect = i % 3 == 0 and i > 0
            split = "train" if i < 2 else "test"
            label = "good" if not defect else "scratch"
            image = make_image(rng, defect=defect)
            file = folder / f"img_{i:03d}.png"
            write_png(file, image)
            record, _ = store.add_image(
                product.id,
                path=str(file),
                sha256=hashlib.sha256(file.read_bytes()).hexdigest(),
                width=W,
                height=H,
                split=split,
                source_label=label,
            )
            if split == "train":
                continue
            heat = np.zeros((H, W), np.float32)
            if defect:
                cv2.line(heat, (40, 40), (80, 60), 2.0, 9)
                heat = cv2.GaussianBlur(heat, (0, 0), 3)
            score = float(heat.max()) + 0.05 * i
            store.add_prediction(
                record.id,
                model_version="experts-1",
                score=score,
                anomalous=score >= 1.0,
                anomaly_map=heat,
            )
            explanation = (
                Explanation("anomalous", "scratch", "center", "medium", "A dark diagonal scratch.")
                if defect
                else Explanation("normal", description="No defect visible.")
            )
            store.add_explanation(
                record.id,
                explanation,
                source="template",
                author="template",
                model_version="experts-1",
            )
    finally:
        store.close()
    return path


@pytest.fixture
def demo_db(tmp_path: Path) -> Path:
    return build_store(tmp_path / "store.sqlite", tmp_path / "images")


@pytest.fixture
def workstation(demo_db: Path) -> Iterator[object]:
    from workstation.gui.app import build_workstation

    ws = build_workstation(demo_db)
    yield ws
    ws.close()
    assert not ws.threads_running()


@pytest.fixture
def window(qtbot, workstation):  # type: ignore[no-untyped-def]
    from workstation.gui.launch import application
    from workstation.gui.main_window import MainWindow

    application()
    win = MainWindow(workstation)
    qtbot.addWidget(win)
    win.resize(1400, 860)
    win.show()
    qtbot.waitUntil(lambda: win.controller.current is not None, timeout=10000)
    yield win
    win.close()


def wait_idle(qtbot, ws) -> None:  # type: ignore[no-untyped-def]
    """Until both lanes have finished everything queued (results delivered)."""
    qtbot.waitUntil(lambda: not ws.io_lane.busy and not ws.model_lane.busy, timeout=15000)


@pytest.fixture
def screenshot():  # type: ignore[no-untyped-def]
    folder = os.environ.get("IAD_SCREENSHOTS")

    def save(widget, name: str) -> Path | None:  # type: ignore[no-untyped-def]
        if not folder:
            return None
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.png"
        widget.grab().save(str(path))
        return path

    return save
