"""Models and training screen: promote / roll back, and a round started and cancelled."""

from __future__ import annotations

import sys
import threading

import numpy as np
from PySide6.QtCore import Qt

from workstation.services.review import QueueFilter

# a stand-in training child: JSON-lines progress, slow enough to be cancelled mid-way
CHILD = """
import json, sys, time
print(json.dumps({"event": "start", "message": "cpu"}), flush=True)
for step in range(1, 400):
    print(json.dumps({"event": "step", "step": step, "total": 400, "loss": 1.0 / step}), flush=True)
    time.sleep(0.05)
print(json.dumps({"event": "done", "out": "x"}), flush=True)
"""


def versions(store, product_id):  # type: ignore[no-untyped-def]
    first = store.add_model_version(
        product_id,
        name="experts-1",
        kind="experts",
        state="active",
        metrics={"image_auroc": 0.81, "pixel_aupro": 0.62},
    )
    second = store.add_model_version(
        product_id,
        name="experts-2",
        kind="experts",
        state="candidate",
        parent_id=first.id,
        metrics={"image_auroc": 0.88, "pixel_aupro": 0.70, "normals": 40.0},
    )
    return first, second


def test_promote_and_roll_back(qtbot, window, tmp_path, screenshot) -> None:  # type: ignore[no-untyped-def]
    store = window.ws.store
    product = window.controller.product
    first, second = versions(store, product.id)
    window.show_models()
    panel = window.models_panel
    panel.refresh()
    assert panel.table.rowCount() == 2
    metrics_column = [
        panel.table.horizontalHeaderItem(c).text() for c in range(panel.table.columnCount())
    ].index("Metrics")
    assert panel.table.item(1, metrics_column).text() == (
        "image_auroc 0.880  normals 40  pixel_aupro 0.700"
    )
    panel.table.selectRow(1)
    panel.promote_button.click()
    assert store.get_model_version(second.id).state == "active"
    assert store.get_model_version(first.id).state != "active"
    assert "experts-2" in window.version_label.text()
    screenshot(window, "models_panel")
    panel.table.selectRow(1)
    panel.promote_button.click()  # already active: the service refuses, the panel says why
    assert "already the active experts version" in panel.status.text()
    panel.table.selectRow(1)
    panel.rollback_button.click()
    assert store.get_model_version(second.id).state == "rolled_back"
    assert store.get_model_version(first.id).state == "active"
    assert panel.status.text() == "experts-2 rolled back; experts-1 is active again."


def test_roll_back_means_the_active_version_not_a_selected_candidate(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    """The service's meaning, through the GUI: a selected candidate is not rolled back (that
    would reactivate its parent over the active version); the active one is."""
    store = window.ws.store
    product = window.controller.product
    first, second = versions(store, product.id)  # first active, second a candidate
    window.show_models()
    panel = window.models_panel
    panel.refresh()
    row = {v.name: n for n, v in enumerate(panel.versions)}
    panel.table.selectRow(row["experts-2"])
    panel.rollback_button.click()
    assert "experts-2 is not the active experts version (candidate)" in panel.status.text()
    assert store.get_model_version(first.id).state == "active"
    assert store.get_model_version(second.id).state == "candidate"
    panel.table.selectRow(row["experts-1"])
    panel.rollback_button.click()
    assert store.get_model_version(first.id).state == "rolled_back"
    assert store.active_model_version(product.id, "experts") is None
    assert panel.status.text() == "experts-1 rolled back."


def give_feedback(ws, product) -> None:  # type: ignore[no-untyped-def]
    """Painted defects and confirmed good parts: enough for an adapter round's manifest."""
    service = ws.review_service(product)
    rows = service.rows(QueueFilter(), offset=0, limit=100)
    for row in rows:
        if row.anomalous:
            mask = np.zeros((row.image.height, row.image.width), np.uint8)
            mask[30:60, 30:80] = 1
            service.save_mask(row.image.id, mask)
            service.review(row.image.id, "anomalous")
        elif row.score is not None:
            service.review(row.image.id, "normal")


def test_round_starts_and_is_cancelled(qtbot, window, monkeypatch, screenshot) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.models_panel import ModelsPanel

    store = window.ws.store
    product = window.controller.product
    versions(store, product.id)
    panel = ModelsPanel(window.ws, product)
    qtbot.addWidget(panel)
    panel.resize(1300, 420)
    panel.show()
    try:
        run_and_cancel(qtbot, window, panel, monkeypatch, screenshot)
    finally:
        panel.shutdown()
    assert not any("rounds" in t.name for t in threading.enumerate())


def run_and_cancel(qtbot, window, panel, monkeypatch, screenshot) -> None:  # type: ignore[no-untyped-def]
    from workstation.services import rounds

    store, product = window.ws.store, panel.product
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)  # no feedback yet: refused
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=20000)
    assert "no adapter round" in panel.status.text()

    give_feedback(window.ws, product)
    # the real service builds the manifest and runs the child; the child is a slow stand-in
    monkeypatch.setattr(rounds, "child_command", lambda *_args: [sys.executable, "-c", CHILD])
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert panel.running
    qtbot.waitUntil(lambda: len(panel.losses) >= 5, timeout=30000)
    assert panel.progress.maximum() == 400
    screenshot(panel, "training_round")
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.running, timeout=15000)
    assert panel.status.text() == "Round cancelled."
    assert store.list_rounds(product.id)[-1].status == "cancelled"
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_a_self_taught_round_needs_no_feedback(qtbot, window, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.models_panel import ModelsPanel
    from workstation.services import rounds

    product = window.controller.product
    panel = ModelsPanel(window.ws, product)
    qtbot.addWidget(panel)
    monkeypatch.setattr(rounds, "child_command", lambda *_args: [sys.executable, "-c", CHILD])
    try:
        panel.start_round("selftaught")
        assert panel.kind.currentText() == "selftaught" and panel.running
        qtbot.waitUntil(lambda: len(panel.losses) >= 3, timeout=30000)
        panel.cancel_round()
        qtbot.waitUntil(lambda: not panel.running, timeout=15000)
    finally:
        panel.shutdown()
    last = window.ws.store.list_rounds(product.id)[-1]
    assert last.kind == "selftaught" and last.status == "cancelled"


def test_the_fusion_choice_of_the_active_experts_is_shown(qtbot, window, screenshot) -> None:  # type: ignore[no-untyped-def]
    store = window.ws.store
    product = window.controller.product
    line = (
        "fusion: fewshot(efficientnet-lite0); selftaught left out: evidence image AUROC "
        "0.71 with it < 0.83 without"
    )
    store.add_model_version(
        product.id, name="experts-1", kind="experts", state="active", config={"fusion": line}
    )
    window.show_models()
    panel = window.models_panel
    panel.refresh()
    assert panel.fusion.text() == line and not panel.fusion.isHidden()
    for width, height in ((1366, 768), (1920, 1080), (1100, 770)):
        window.resize(width, height)
        qtbot.wait(50)
        screenshot(window, f"models_fusion_{width}")
