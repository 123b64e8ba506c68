"""Models and training screen: promote / roll back, and a round started and cancelled."""

from __future__ import annotations

import sys
from typing import Any

from PySide6.QtCore import Qt

from workstation.core.types import Round

# a stand-in training child: JSON-lines progress, slow enough to be cancelled mid-way
CHILD = """
import json, sys, time
print(json.dumps({"event": "start", "message": "cpu"}), flush=True)
for step in range(1, 400):
    print(json.dumps({"event": "step", "step": step, "total": 400, "loss": 1.0 / step}), flush=True)
    time.sleep(0.05)
print(json.dumps({"event": "done", "out": "x"}), flush=True)
"""


class FakeDriver:
    """Prepares a Round row like the rounds service and runs the stand-in child."""

    def __init__(self, store: Any, product_id: int, tmp: Any) -> None:
        self.store, self.product_id, self.tmp = store, product_id, tmp
        self.finished: list[tuple[int, bool, int]] = []

    def prepare(self, kind: str) -> tuple[Round, list[str]]:
        manifest = self.tmp / "manifest.json"
        manifest.write_text("{}")
        round_ = self.store.add_round(self.product_id, kind=kind, manifest_path=manifest)
        self.store.update_round(round_.id, status="running")
        return round_, [sys.executable, "-c", CHILD]

    def finish(
        self, round_: Round, *, exit_code: int, cancelled: bool, events: list[dict[str, Any]]
    ) -> str:
        self.finished.append((exit_code, cancelled, len(events)))
        self.store.update_round(round_.id, status="cancelled" if cancelled else "failed")
        return "Round cancelled." if cancelled else "Round failed."


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
        metrics={"image_auroc": 0.88, "pixel_aupro": 0.70},
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
    panel.table.selectRow(1)
    panel.promote_button.click()
    assert store.get_model_version(second.id).state == "active"
    assert store.get_model_version(first.id).state != "active"
    assert "experts-2" in window.version_label.text()
    screenshot(window, "models_panel")
    panel.table.selectRow(1)
    panel.rollback_button.click()
    assert store.get_model_version(second.id).state == "rolled_back"
    assert store.get_model_version(first.id).state == "active"


def test_round_starts_and_is_cancelled(qtbot, window, tmp_path, screenshot) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.models_panel import ModelsPanel

    store = window.ws.store
    product = window.controller.product
    versions(store, product.id)
    driver = FakeDriver(store, product.id, tmp_path)
    panel = ModelsPanel(window.ws, product, driver=driver)
    qtbot.addWidget(panel)
    panel.resize(1300, 420)
    panel.show()
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert panel.running
    qtbot.waitUntil(lambda: len(panel.losses) >= 5, timeout=20000)
    assert panel.progress.maximum() == 400
    screenshot(panel, "training_round")
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.running and bool(driver.finished), timeout=10000)
    _exit_code, cancelled, events = driver.finished[0]
    assert cancelled and events >= 5
    assert store.list_rounds(product.id)[-1].status == "cancelled"
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()
