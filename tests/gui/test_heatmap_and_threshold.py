"""What an inspector meets first: a heatmap that reads, its colour bar, a threshold to move,
and a layout that keeps the image and the file names on a laptop screen."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint
from PySide6.QtGui import QImage

from tests.gui.conftest import wait_idle
from workstation.core.types import CALIBRATED_NORMAL_LEVEL


def grab_rgb(widget) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The widget as painted now, (H, W, 3) uint8 (a copy: the QImage dies here)."""
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), -1)
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def defect_pixels(window) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Viewport (x, y) of the image pixels whose score is at or above the threshold."""
    heat = window.canvas.content.heatmap
    rows, cols = np.nonzero(heat.values >= heat.threshold)
    points = [
        window.canvas.mapFromScene((c + 0.5) * heat.scale, (r + 0.5) * heat.scale)
        for r, c in zip(rows, cols, strict=True)
    ]
    return np.array([p.x() for p in points]), np.array([p.y() for p in points])


def show_defect(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    """Select the conftest store's first defect image (img_003: a scratch scored 2.0)."""
    row = next(
        i
        for i in range(window.list_model.rowCount())
        if window.list_model.row_at(i).image.name == "img_003.png"
    )
    window.controller.select_row(row)
    qtbot.waitUntil(lambda: window.controller.current.detail.record.name == "img_003.png")
    wait_idle(qtbot, window.ws)


def test_heat_colour_reads_over_the_defect_at_default_settings(qtbot, window, screenshot) -> None:  # type: ignore[no-untyped-def]
    show_defect(qtbot, window)
    canvas = window.canvas
    canvas.viewport().repaint()
    xs, ys = defect_pixels(window)
    assert xs.size > 10
    with_heat = grab_rgb(canvas.viewport()).astype(np.int32)
    window.toolbar.heatmap.setChecked(False)
    without = grab_rgb(canvas.viewport()).astype(np.int32)
    window.toolbar.heatmap.setChecked(True)
    change = np.abs(with_heat[ys, xs] - without[ys, xs]).sum(axis=1)
    assert np.median(change) > 120  # a plain colour shift over the defect, not a tint
    chroma = with_heat[ys, xs].max(axis=1) - with_heat[ys, xs].min(axis=1)
    assert np.median(chroma) > 60  # coloured, not a gray on the gray part
    screenshot(window, "heatmap_default")


def test_the_heat_reads_above_a_mask_too(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    """A mask covering the defect (as ground truth does) must not hide the heat under it."""
    show_defect(qtbot, window)
    canvas = window.canvas
    window.controller.mask_from_heatmap()
    wait_idle(qtbot, window.ws)
    assert canvas.editor.mask.any()
    xs, ys = defect_pixels(window)
    with_heat = grab_rgb(canvas.viewport()).astype(np.int32)
    chroma = with_heat[ys, xs].max(axis=1) - with_heat[ys, xs].min(axis=1)
    colour = with_heat[ys, xs].mean(axis=0)
    assert np.median(chroma) > 60
    assert colour[1] > 60  # inferno's orange, not the mask's red tint over a dark heat


def test_colour_bar_shows_threshold_peak_and_the_score_under_the_cursor(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    show_defect(qtbot, window)
    bar, heat = window.colorbar, window.canvas.content.heatmap
    assert bar.isVisible() and bar.display is heat
    assert heat.vmin == CALIBRATED_NORMAL_LEVEL and heat.threshold == 1.0
    assert abs((heat.vmin + heat.vmax) / 2 - heat.threshold) < 1e-6  # threshold mid-scale
    assert heat.peak == np.float32(window.controller.current.detail.anomaly_map.max())
    assert "threshold 1.00" in bar.describe() and f"peak {heat.peak:.2f}" in bar.describe()
    xs, ys = defect_pixels(window)
    qtbot.mouseMove(window.canvas.viewport(), QPoint(int(xs[0]), int(ys[0])))
    qtbot.waitUntil(lambda: bar.cursor is not None)
    assert bar.cursor >= 1.0 and window.cursor_label.text().startswith("under cursor: ")
    window.toolbar.heatmap.setChecked(False)
    assert not bar.isVisible()


def test_dragging_the_threshold_changes_the_counts_and_saving_records_the_author(
    qtbot, window, screenshot
) -> None:  # type: ignore[no-untyped-def]
    window.show_threshold()
    panel = window.threshold_panel
    qtbot.waitUntil(lambda: panel.groups is not None)
    at_default = panel.flagged
    assert at_default == sum(s >= 1.0 for s in panel.groups.all_scores) and at_default > 0
    assert "known defects missed" in panel.counts.text()
    panel.line.setValue(2.5)  # what dragging the line does
    assert panel.flagged < at_default and abs(panel.value.value() - 2.5) < 0.01
    panel.value.setValue(0.1)  # typing a number moves the line too
    assert abs(panel.line.value() - 0.1) < 1e-6 and panel.flagged > at_default
    assert panel.save_button.isEnabled()
    screenshot(window, "threshold_panel")
    panel.save()
    store = window.ws.store
    qtbot.waitUntil(lambda: store.get_product("widget").threshold == 0.1)
    history = store.threshold_history(store.get_product("widget").id)
    assert history[-1].threshold == 0.1 and history[-1].author == window.ws.reviewer
    # the window follows: the heatmap's threshold is the new one, the queue flags follow
    qtbot.waitUntil(
        lambda: window.controller.current is not None
        and window.controller.current.content.heatmap.threshold == 0.1
    )
    flagged = [window.list_model.row_at(i).anomalous for i in range(window.list_model.rowCount())]
    assert sum(bool(f) for f in flagged) == panel.flagged


def test_laptop_screens_keep_the_image_and_the_names(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    for width, height in ((1808, 768), (1366, 768), (1100, 770)):
        window.resize(width, height)
        window.show_models()
        window.show_threshold()
        qtbot.wait(50)
        table = window.image_list.table
        needed = table.fontMetrics().horizontalAdvance("img_000.png")
        assert table.columnWidth(0) >= needed, (width, table.columnWidth(0))
        assert window.canvas.height() >= height / 2, (width, window.canvas.height())
