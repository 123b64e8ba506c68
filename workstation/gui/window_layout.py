"""Window layout pieces: the canvas/reference splitter, pane captions, dock sizing.

Kept apart from ``main_window`` (which wires actions) because the layout rules are what a
laptop screen tests: which pane keeps which share, and how narrow a column may get.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QWidget,
)

if TYPE_CHECKING:
    from workstation.store.repository import Store

LAYOUT_KEYS = {
    "geometry": "gui.window.geometry",
    "docks": "gui.window.docks",
    "split": "gui.window.split",
}
"""Store app-state keys for the window layout (base64 of Qt's own state blobs)."""
SIDE_DOCK_WIDTHS = (460, 340)
"""Image list and explanation widths on a wide first window (px)."""
CANVAS_SHARE = 2 / 3
"""The canvas gets two thirds of the centre by default, the normal reference one third."""


def cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is installed, known without importing torch.

    Without one CUDA cannot be available, so "auto" means CPU; with one, torch decides.
    """
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia").exists()
    if sys.platform == "win32":
        system = Path(os.environ.get("SYSTEMROOT", r"C:\Windows")) / "System32"
        return (system / "nvcuda.dll").exists()
    return False


class ShareSplitter(QSplitter):
    """A splitter that keeps its first pane at ``share`` of the width until the user drags.

    Sizes set before the first show get rescaled from a provisional width (and again when
    the docks settle), which left the reference pane a sliver; applying the share after
    every resize, once Qt has laid the panes out, holds it.
    """

    def __init__(self, share: float) -> None:
        super().__init__(Qt.Orientation.Horizontal)
        self.share = share
        self.keep_share = True
        self.splitterMoved.connect(self._moved)

    def _moved(self) -> None:
        self.keep_share = False

    def restoreState(self, state: QByteArray | bytes) -> bool:
        restored = super().restoreState(state)
        self.keep_share = self.keep_share and not restored
        return restored

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.keep_share and self.count() == 2:
            total = max(2, self.width() - self.handleWidth())
            first = round(total * self.share)
            self.setSizes([first, total - first])


def caption(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("muted")
    label.setContentsMargins(8, 4, 8, 2)
    # a long caption must not widen its pane (it pushed the reference pane to a sliver)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


ENGINEER_DOCKS = ("models", "threshold")
"""Docks an engineer consults under the canvas (Models and training, Threshold)."""
MIN_CANVAS_SHARE = 0.5
"""The image keeps at least this share of the window's height when such a dock opens."""
ENGINEER_DOCK_SHARE = 0.45
DOCK_CHROME = 34
"""A dock's title bar and the separator above it (px)."""


def scrollable(panel: QWidget) -> QScrollArea:
    """``panel`` in a scroll area: its own minimum size (a table, two plots) no longer
    forces the window's layout, which squeezed the canvas to 250 px on a 768 px screen
    and the image list's name column to ``go…ng`` on a wide one."""
    area = QScrollArea()
    area.setWidget(panel)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setMinimumSize(QSize(120, 80))
    return area


def engineer_dock_height(window_height: int, canvas_height: int) -> int:
    """Height for a dock under the canvas that leaves the image half the window."""
    keep = round(window_height * MIN_CANVAS_SHARE)
    room = canvas_height - keep - DOCK_CHROME
    return max(80, min(round(window_height * ENGINEER_DOCK_SHARE), room))


def place_engineer_dock(window: QMainWindow, dock: QDockWidget, canvas: QWidget) -> None:
    """Under the canvas, tabbed with an engineer dock already there, at most the height
    that keeps the image at half the window's."""
    bottom = Qt.DockWidgetArea.BottomDockWidgetArea
    others = [
        d
        for d in window.findChildren(QDockWidget)
        if d is not dock
        and d.objectName() in ENGINEER_DOCKS
        and not d.isHidden()
        and not d.isFloating()
        and window.dockWidgetArea(d) == bottom
    ]
    if others:
        window.tabifyDockWidget(others[0], dock)
        return
    height = engineer_dock_height(window.height(), canvas.height())
    window.resizeDocks([dock], [height], Qt.Orientation.Vertical)


def fit_side_docks(window: QMainWindow, list_dock: QDockWidget, text_dock: QDockWidget) -> None:
    """First-run widths in proportion to the window, capped at what the panels need:
    fixed 460 + 340 px left a 1100 px laptop window a canvas under 300 px wide."""
    width = window.width()
    window.resizeDocks(
        [list_dock, text_dock],
        [
            min(SIDE_DOCK_WIDTHS[0], round(width * 0.38)),
            min(SIDE_DOCK_WIDTHS[1], round(width * 0.22)),
        ],
        Qt.Orientation.Horizontal,
    )


def restore_layout(window: QMainWindow, store: Store, splitter: QSplitter) -> bool:
    """Geometry, docks and the canvas/reference split as the inspector left them; True
    when the docks were restored (their widths are then the inspector's)."""
    saved = {what: store.get_state(key) for what, key in LAYOUT_KEYS.items()}
    if saved["geometry"]:
        window.restoreGeometry(QByteArray.fromBase64(saved["geometry"].encode()))
    if saved["docks"]:
        window.restoreState(QByteArray.fromBase64(saved["docks"].encode()))
    if saved["split"]:
        splitter.restoreState(QByteArray.fromBase64(saved["split"].encode()))
    return bool(saved["docks"])


def save_layout(window: QMainWindow, store: Store, splitter: QSplitter) -> None:
    blobs = {
        "geometry": window.saveGeometry(),
        "docks": window.saveState(),
        "split": splitter.saveState(),
    }
    for what, blob in blobs.items():
        store.set_state(LAYOUT_KEYS[what], bytes(blob.toBase64().data()).decode())
