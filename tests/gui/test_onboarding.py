"""Onboarding wizard: end to end on generated images, and cancel while the experts run."""

from __future__ import annotations

import numpy as np

from tests.gui.conftest import make_image
from workstation.core.imageio import write_png
from workstation.gui.onboarding import OnboardingWizard


def shots(folder, rng, *, normals: int, defects: int):  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"normal": [], "defect": []}
    for kind, count in (("normal", normals), ("defect", defects)):
        for i in range(count):
            path = folder / f"{kind}_{i}.png"
            write_png(path, make_image(rng, defect=kind == "defect"))
            paths[kind].append(path)
    return paths


def fill(wizard: OnboardingWizard, paths) -> None:  # type: ignore[no-untyped-def]
    wizard.product_page.name.setText("bracket")
    wizard.product_page.description.setPlainText("stamped steel bracket")
    wizard.next()
    wizard.rules_page.rules.setPlainText("- the frame is closed\nholes are round")
    wizard.rules_page.vocabulary.setPlainText("scratch\ndent")
    wizard.next()
    assert not wizard.images_page.isComplete()  # at least one normal image is required
    wizard.images_page.normals.add(paths["normal"])
    wizard.images_page.defects.add(paths["defect"])
    assert wizard.images_page.isComplete()


def test_wizard_runs_end_to_end_on_generated_images(qtbot, window, tmp_path, screenshot) -> None:  # type: ignore[no-untyped-def]
    ws = window.ws
    paths = shots(tmp_path / "shots", np.random.default_rng(3), normals=3, defects=2)
    wizard = OnboardingWizard(ws, window)
    qtbot.addWidget(wizard)
    wizard.show()
    screenshot(wizard, "onboarding_product")
    wizard.product_page.name.setText("widget")
    assert not wizard.product_page.isComplete()  # the demo store already has "widget"
    fill(wizard, paths)
    screenshot(wizard, "onboarding_images")
    wizard.next()
    page = wizard.run_page
    qtbot.waitUntil(lambda: page.outcome is not None or not page.running, timeout=120000)
    assert page.outcome is not None, page.status.text()
    screenshot(wizard, "onboarding_preview")
    outcome = page.outcome
    product = ws.store.get_product("bracket")
    assert product.normality_rules == ("the frame is closed", "holes are round")
    assert product.defect_vocabulary == ("scratch", "dent")
    assert product.threshold is not None and outcome.threshold == product.threshold
    assert len(outcome.previews) == 5 and page.grid.count() == 5
    assert outcome.readiness and page.readiness.isVisible()
    assert page.teach.isVisible() and wizard.teach_expert  # offered, on by default
    page.teach.setChecked(False)
    assert not wizard.teach_expert
    page.teach.setChecked(True)
    assert ws.store.active_model_version(product.id, "experts") is not None
    assert all(ws.store.latest_prediction(r.id) for r in ws.store.list_images(product.id))
    wizard.accept()
    window.open_product(wizard.product.name)
    qtbot.waitUntil(
        lambda: (
            window.controller.current is not None and window.controller.product.name == "bracket"
        )
    )


def test_wizard_cancel_stops_the_run(qtbot, window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths = shots(tmp_path / "shots", np.random.default_rng(4), normals=1, defects=0)
    started: list[bool] = []

    def endless(ws, request, progress, cancel):  # type: ignore[no-untyped-def]
        started.append(True)
        step = 0
        while True:  # progress() raises CancelledError once cancel is pressed
            step += 1
            progress(step % 100, 100, "fitting the experts")
            cancel.event.wait(0.01)

    wizard = OnboardingWizard(window.ws, window, runner=endless)
    qtbot.addWidget(wizard)
    wizard.show()
    fill(wizard, paths)
    wizard.next()
    page = wizard.run_page
    qtbot.waitUntil(lambda: bool(started) and page.progress.maximum() == 100, timeout=30000)
    page.cancel.click()
    qtbot.waitUntil(lambda: not page.running, timeout=10000)
    assert page.status.text().startswith("Cancelled")
    assert not page.isComplete()
