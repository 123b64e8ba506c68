"""Window layout pieces: the canvas/reference splitter, pane captions, dock sizing.

Kept apart from ``main_window`` (which wires actions) because the layout rules are what a
laptop screen tests: which pane keeps which share, and how narrow a column may get.
"""

from __future__ import annotations

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
    QTableView,
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
MIN_DOCK_HEIGHT = 260
"""Below this a dock under the canvas shows too little of a table or plot to be useful."""
SIDE_ENGINEER_SHARE = 0.32
"""Width of the right dock area while it holds an engineer tab (a plot needs room)."""
DOCK_CHROME = 34
"""A dock's title bar and the separator above it (px)."""


class _Holder(QWidget):
    """Holds a panel in a scroll area at the panel's minimum size, not its preferred one.

    A panel with word-wrapped labels has a height-for-width layout, and for such a widget
    QScrollArea takes the *preferred* height (a plot's 480 px) as the minimum, so a
    300 px dock scrolled a plot it could have shown whole; without a layout of its own
    the holder reports only the panel's minimum and sizes the panel to itself.
    """

    def __init__(self, panel: QWidget) -> None:
        super().__init__()
        panel.setParent(self)
        self.panel = panel

    def minimumSizeHint(self) -> QSize:
        return self.panel.minimumSizeHint()

    def sizeHint(self) -> QSize:
        return self.panel.minimumSizeHint()

    def resizeEvent(self, event: QResizeEvent) -> None:
        self.panel.setGeometry(self.rect())


def scrollable(panel: QWidget) -> QScrollArea:
    """``panel`` in a scroll area: its own minimum size (a table, two plots) no longer
    forces the window's layout, which squeezed the canvas to 250 px on a 768 px screen
    and the image list's name column to ``go…ng`` on a wide one."""
    area = QScrollArea()
    area.setWidget(_Holder(panel))
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setMinimumSize(QSize(120, 80))
    return area


def engineer_dock_height(window_height: int, canvas_height: int) -> int:
    """Height for a dock under the canvas that leaves the image half the window."""
    keep = round(window_height * MIN_CANVAS_SHARE)
    room = canvas_height - keep - DOCK_CHROME
    return min(round(window_height * ENGINEER_DOCK_SHARE), room)


def place_engineer_dock(
    window: QMainWindow, dock: QDockWidget, canvas: QWidget, side: QDockWidget
) -> None:
    """Under the canvas, tabbed with an engineer dock already there, at most the height
    that keeps the image at half the window's. On a short screen (768 px) that height is
    a strip, so the dock becomes a tab beside ``side`` (the explanation), full height."""
    for other in window.findChildren(QDockWidget):
        engineer = other.objectName() in ENGINEER_DOCKS and other is not dock
        if engineer and not other.isHidden() and not other.isFloating():
            window.tabifyDockWidget(other, dock)
            return
    height = engineer_dock_height(window.height(), canvas.height())
    if height < MIN_DOCK_HEIGHT:
        window.addDockWidget(window.dockWidgetArea(side), dock)
        window.tabifyDockWidget(side, dock)
        wide = max(side.width(), round(window.width() * SIDE_ENGINEER_SHARE))
        window.resizeDocks([side], [wide], Qt.Orientation.Horizontal)
        return
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


NAME_SAMPLE = "…/000000.png"
"""The shortest useful file-name text: the end of a name, elided in the middle."""


def keep_name_readable(dock: QDockWidget, table: QTableView) -> None:
    """Hold the image list's dock wide enough that the name column shows ``NAME_SAMPLE``
    beside the other columns as they are sized; an opened Models dock cut it to ``go…ng``.
    Re-applied whenever a column is resized (the numbers columns follow their contents)."""

    def apply() -> None:
        header = table.horizontalHeader()
        others = sum(header.sectionSize(c) for c in range(1, header.count()))
        name = table.fontMetrics().horizontalAdvance(NAME_SAMPLE) + 16
        chrome = table.verticalScrollBar().sizeHint().width() + 2 * table.frameWidth() + 16
        dock.setMinimumWidth(name + others + chrome)

    table.horizontalHeader().sectionResized.connect(lambda *_: apply())
    apply()
