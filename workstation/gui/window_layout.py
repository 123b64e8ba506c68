"""Window layout pieces: the canvas/reference splitter, pane captions, dock sizing.

Kept apart from ``main_window`` (which wires actions) because the layout rules are what a
laptop screen tests: which pane keeps which share, and how narrow a column may get.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QSplitter

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


