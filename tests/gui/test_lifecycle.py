"""Start-up and shut-down: launch_gui runs and returns, and no worker thread outlives it."""

from __future__ import annotations

import threading

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from workstation.gui.launch import application, launch_gui


def lane_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if "lane" in t.name]


def test_launch_gui_opens_the_product_and_leaves_no_thread_running(qtbot, demo_db) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.main_window import MainWindow

    application()
    seen: list[MainWindow] = []

    def close_when_ready() -> None:
        windows = [
            w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()
        ]
        if windows and windows[0].controller.current is not None:
            seen.append(windows[0])
            windows[0].controller.review("accepted")  # a queued write the close must not lose
            windows[0].close()  # the last window: exec() returns
        else:
            QTimer.singleShot(20, close_when_ready)

    QTimer.singleShot(0, close_when_ready)
    assert launch_gui(db=demo_db, product="widget") == 0
    window = seen[0]
    assert window.controller.product.name == "widget"
    assert not window.ws.threads_running()
    assert lane_threads() == []
    from workstation.store.repository import Store

    with Store.open(demo_db) as store:
        product = store.get_product("widget")
        assert len(store.list_reviews(product.id)) == 1


def test_unknown_product_falls_back_with_a_message(qtbot, workstation) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.main_window import MainWindow

    application()
    window = MainWindow(workstation, product="no-such-product")
    qtbot.addWidget(window)
    assert "no-such-product" in window.statusBar().currentMessage()
    assert window.controller.product.name == "widget"
    window.close()


def test_empty_store_invites_onboarding(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.app import build_workstation
    from workstation.gui.main_window import MainWindow

    application()
    ws = build_workstation(tmp_path / "empty.sqlite")
    window = MainWindow(ws)
    qtbot.addWidget(window)
    assert "New product" in window.product_label.text()
    window.controller.next()  # keys do nothing harmful without images
    window.controller.review("accepted")
    window.close()
    ws.close()
    assert not ws.threads_running()


def test_inspect_scores_new_images_on_the_model_lane(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A product with images but no predictions: I fits the experts and scores them all."""
    from tests.gui.conftest import build_store
    from workstation.gui.app import build_workstation
    from workstation.gui.main_window import MainWindow

    db = build_store(tmp_path / "s.sqlite", tmp_path / "img", count=5)
    ws = build_workstation(db)
    store = ws.store
    product = store.get_product("widget")
    fresh = store.create_product("fresh")
    for record in store.list_images(product.id):
        store.add_image(
            fresh.id,
            path=record.path,
            sha256=record.sha256,
            width=record.width,
            height=record.height,
            split=record.split,
            source_label=record.source_label,
        )
    application()
    window = MainWindow(ws, product="fresh")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.controller.current is not None)
    assert window.controller.current.content.heatmap is None
    window.actions_by_id["inspect"].trigger()
    assert window.lane_cancel.isVisible()
    qtbot.waitUntil(lambda: not window.lane_cancel.isVisible(), timeout=120000)
    assert "5 image(s) scored" in window.statusBar().currentMessage()
    assert "5 draft(s) written" in window.statusBar().currentMessage()
    assert all(store.latest_prediction(r.id) for r in store.list_images(fresh.id))
    assert all(store.latest_explanation(r.id) for r in store.list_images(fresh.id))
    qtbot.waitUntil(lambda: window.controller.current.content.heatmap is not None)
    assert "experts-" in window.version_label.text()
    window.close()
    ws.close()


def test_window_layout_and_icon_survive_a_relaunch(qtbot, workstation) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    from workstation.gui.main_window import MainWindow
    from workstation.gui.window_layout import CANVAS_SHARE

    application()
    first = MainWindow(workstation)
    qtbot.addWidget(first)
    assert not first.windowIcon().isNull()
    first.resize(1600, 900)
    first.show()
    qtbot.waitUntil(lambda: bool(first.canvas_caption.text()))  # a long caption is shown
    canvas, reference = first.splitter.sizes()
    assert abs(canvas / (canvas + reference) - CANVAS_SHARE) < 0.05  # not a sliver
    first.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, first.text_dock)
    first.resize(first.minimumSizeHint().width(), 790)
    first.splitter.setSizes([160, 160])
    size = first.size()
    first.close()

    second = MainWindow(workstation)
    qtbot.addWidget(second)
    second.show()
    # a fresh window is 1500 x 900; the saved one comes back (clamped to the 800 x 800
    # offscreen screen, so only roughly)
    assert abs(second.height() - size.height()) < 30 and second.width() < 1000
    assert second.dockWidgetArea(second.text_dock) == Qt.DockWidgetArea.LeftDockWidgetArea
    canvas, reference = second.splitter.sizes()
    assert abs(canvas - reference) <= 2  # the inspector's even split, not the 2:1 default
    second.close()


def test_a_first_window_at_laptop_size_leaves_the_canvas_room(qtbot, workstation) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.main_window import MainWindow
    from workstation.gui.window_layout import SIDE_DOCK_WIDTHS

    application()
    win = MainWindow(workstation)  # a store with no saved layout
    qtbot.addWidget(win)
    win.resize(1100, 770)
    win.show()
    qtbot.waitUntil(lambda: win.controller.current is not None, timeout=10000)
    # fixed 460 + 340 px docks left the canvas under 300 px at this size
    assert win.centralWidget().width() >= 0.38 * win.width()
    assert win.list_dock.width() <= SIDE_DOCK_WIDTHS[0] + 10
    assert win.text_dock.width() <= SIDE_DOCK_WIDTHS[1] + 10
    win.close()
