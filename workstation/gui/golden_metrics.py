""""Metrics across versions": what the gate judges, on the golden set, per model version.

Image AUROC, recall at the product's threshold and the false-alarm rate there, for every
version that scored the golden images (``services.golden``). Without a golden set the
plot says how to make one and offers to mark the reviewed images golden, so the next
round's gate has cases an inspector already decided to hold it to.
"""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from workstation.core.types import Product
from workstation.gui.app import Workstation
from workstation.services.golden import GoldenMetrics, golden_metrics, reviewed_not_golden

SERIES = (
    ("auroc", "image AUROC", "#4a90e2"),
    ("recall", "recall at the threshold", "#5cb85c"),
    ("false_alarm_rate", "false alarms at the threshold", "#d9534f"),
)
NO_GOLDEN = (
    "No golden set yet: review some images (N / D), then mark them golden; every round's "
    "gate is then held to them."
)


class GoldenMetricsView(QWidget):
    marked = Signal(int)
    """How many images were just marked golden."""

    def __init__(
        self, ws: Workstation, product: Product, plot: pg.PlotWidget, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.ws, self.product, self.plot = ws, product, plot
        self.metrics: list[GoldenMetrics] = []
        self.candidates: list[int] = []
        self.plot.setYRange(0.0, 1.0, padding=0.05)
        self.key = QLabel()
        self.key.setWordWrap(True)
        self.note = QLabel(NO_GOLDEN)
        self.note.setWordWrap(True)
        self.note.setObjectName("muted")
        self.mark_button = QPushButton("Mark reviewed images golden")
        self.mark_button.setVisible(False)
        self.mark_button.clicked.connect(self.mark_reviewed)
        row = QHBoxLayout()
        row.addWidget(self.note, 1)
        row.addWidget(self.mark_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.key)
        layout.addLayout(row)
        self.refresh()

    def refresh(self) -> None:
        store, product = self.ws.store, self.product
        self.ws.io_lane.submit(
            lambda _p, _c: (golden_metrics(store, product), reviewed_not_golden(store, product)),
            channel="golden-metrics",
            on_result=self._show,
            on_error=lambda exc: self.note.setText(f"Could not read the golden set: {exc}"),
        )

    def _show(self, result: tuple[list[GoldenMetrics], list[int]]) -> None:
        self.metrics, self.candidates = result
        self.plot.clear()
        keys = []
        for attr, label, colour in SERIES:
            points = [
                (n, value)
                for n, m in enumerate(self.metrics)
                if (value := getattr(m, attr)) is not None
            ]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            self.plot.plot(
                list(xs), list(ys), pen=pg.mkPen(colour, width=2), symbol="o", symbolBrush=colour
            )
            keys.append(f'<span style="color:{colour}">&#9679;</span>&nbsp;{label}')
        self.key.setText("&nbsp;&nbsp; ".join(keys))
        self.plot.getAxis("bottom").setTicks([[(n, m.version) for n, m in enumerate(self.metrics)]])
        count = len(self.candidates)
        if self.metrics:
            last = self.metrics[-1]
            self.note.setText(
                f"Golden set: {last.normals} normal and {last.defects} defect image(s), judged "
                f"at threshold {self.product.decision_threshold:.2f}."
            )
        else:
            self.note.setText(NO_GOLDEN)
        self.mark_button.setText(f"Mark {count} reviewed image(s) golden")
        self.mark_button.setVisible(count > 0)

    def mark_reviewed(self) -> None:
        ids, store, author = list(self.candidates), self.ws.store, self.ws.reviewer

        def job(_p: Any, _c: Any) -> int:
            return store.mark_golden(ids, author=author)

        self.mark_button.setEnabled(False)
        self.ws.io_lane.submit(job, on_result=self._marked, essential=True)

    def _marked(self, count: int) -> None:
        self.mark_button.setEnabled(True)
        self.marked.emit(count)
        self.refresh()
