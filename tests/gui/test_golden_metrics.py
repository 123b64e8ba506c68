""" "Metrics across versions" plots what the gate judges on the golden set, or says how to
make one and offers to mark the reviewed images golden."""

from __future__ import annotations

import numpy as np

from tests.gui.conftest import wait_idle
from workstation.core.metrics import auroc
from workstation.gui.golden_metrics import NO_GOLDEN
from workstation.services.golden import golden_set


def test_without_a_golden_set_the_plot_says_how_and_marking_makes_one(
    qtbot, window, screenshot
) -> None:  # type: ignore[no-untyped-def]
    store, product = window.ws.store, window.controller.product
    service = window.controller.service
    rows = store.query_images(product.id, order_by="name")
    tested = [r for r in rows if r.image.split == "test"]
    verdicts = {
        r.image.id: ("anomalous" if r.image.source_label != "good" else "normal")
        for r in tested[:6]
    }
    for image_id, verdict in verdicts.items():
        service.review(image_id, verdict)
    window.show_models()
    view = window.models_panel.golden
    wait_idle(qtbot, window.ws)
    assert view.metrics == [] and view.note.text() == NO_GOLDEN
    assert view.mark_button.isVisible() and view.mark_button.text().startswith("Mark 6 ")
    screenshot(window, "golden_none")
    view.mark_button.click()
    qtbot.waitUntil(lambda: bool(view.metrics), timeout=10000)
    assert golden_set(store, product) == {i: v == "anomalous" for i, v in verdicts.items()}
    (experts,) = view.metrics
    scores = {r.image.id: r.score for r in tested[:6]}
    labels = np.array([verdicts[i] == "anomalous" for i in sorted(scores)])
    values = np.array([scores[i] for i in sorted(scores)])
    assert experts.version == "experts-1"
    assert experts.defects == int(labels.sum()) and experts.normals == int((~labels).sum())
    assert experts.recall == (values[labels] >= 1.0).mean()
    assert experts.false_alarm_rate == (values[~labels] >= 1.0).mean()
    assert experts.auroc == auroc(labels, values)
    assert "Golden set: " in view.note.text() and not view.mark_button.isVisible()
    assert "recall at the threshold" in view.key.text()
    screenshot(window, "golden_metrics")
