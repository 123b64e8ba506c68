"""The threshold panel: a product's score histogram and a threshold to drag.

Normal shots (leave-one-out at calibration), known normals and known defects
(``services.threshold``) as three histograms on one score axis; the decision threshold
is a line to drag (or a number to type), and the counts under the plot (flagged images,
false alarms, missed defects) follow it live. "Save" stores the value with its author,
and the window re-reads the product so the queue, the contour and the colours follow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from workstation.core.types import CALIBRATED_THRESHOLD, Product
from workstation.gui.app import Workstation
from workstation.services.threshold import ScoreGroups, counts_at, score_groups, set_threshold

GROUP_STYLES = (
    ("normal_shots", "normal shots (leave-one-out)", (110, 170, 255)),
    ("known_normals", "reviewed / labelled normals", (120, 210, 140)),
    ("known_defects", "reviewed / labelled defects", (255, 110, 90)),
)
BINS = 40


def histogram_edges(groups: ScoreGroups, bins: int = BINS) -> np.ndarray:
    """One set of bin edges over every group and the threshold, so the bars line up."""
    values = np.concatenate(
        [np.asarray(getattr(groups, name), dtype=np.float64) for name, _, _ in GROUP_STYLES]
        + [np.asarray([groups.threshold, CALIBRATED_THRESHOLD, 0.0])]
    )
    low, high = float(np.percentile(values, 0.5)), float(np.percentile(values, 99.5))
    high = max(high, groups.threshold * 1.5, low + 1e-3)
    return np.linspace(low, high, bins + 1)


class ThresholdPanel(QWidget):
    threshold_saved = Signal(float)

    def __init__(self, ws: Workstation, product: Product, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws, self.product = ws, product
        self.groups: ScoreGroups | None = None
        self.flagged = 0
        """Images the threshold now shown would flag (tests and the window read it)."""
        self.plot = pg.PlotWidget(background=None)
        self.plot.setLabel("bottom", "image score (1.00: the calibrated threshold, dashed)")
        self.plot.setLabel("left", "images")
        self.plot.setMinimumHeight(120)
        self.plot.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Expanding)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.line = pg.InfiniteLine(
            pos=product.decision_threshold,
            angle=90,
            movable=True,
            pen=pg.mkPen((255, 255, 255), width=2),
            hoverPen=pg.mkPen((255, 220, 0), width=3),
            label="threshold {value:.2f}",
            labelOpts={"position": 0.92, "color": (255, 255, 255)},
        )
        self.default_line = pg.InfiniteLine(
            pos=CALIBRATED_THRESHOLD,
            angle=90,
            pen=pg.mkPen((180, 180, 180), width=1, style=Qt.PenStyle.DashLine),
        )
        self.value = QDoubleSpinBox()
        self.value.setDecimals(2)
        self.value.setSingleStep(0.05)
        self.value.setRange(-1000.0, 1000.0)
        self.value.setValue(product.decision_threshold)
        self.counts = QLabel("Reading the scores…")
        self.counts.setWordWrap(True)
        self.counts.setTextFormat(Qt.TextFormat.RichText)
        self.history = QLabel("")
        self.history.setObjectName("muted")
        self.history.setWordWrap(True)
        self.key = QLabel(
            "&nbsp;&nbsp; ".join(
                f'<span style="color:rgb{colour}">&#9632;</span>&nbsp;{label}'
                for _, label, colour in GROUP_STYLES
            )
        )
        self.key.setWordWrap(True)
        self.save_button = QPushButton("Save")
        self.save_button.setObjectName("primary")
        self.reset_button = QPushButton(f"Back to {CALIBRATED_THRESHOLD:.2f}")
        self.reset_button.setToolTip("Back to the threshold the experts' calibration chose")
        # two short rows rather than one long one: the panel may be a narrow side tab
        row = QHBoxLayout()
        row.addWidget(QLabel("Threshold"))
        row.addWidget(self.value)
        row.addStretch(1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.reset_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(row)
        layout.addLayout(buttons)
        layout.addWidget(self.counts)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.key)
        layout.addWidget(self.history)
        self.line.sigPositionChanged.connect(lambda: self.preview(self.line.value()))
        self.value.valueChanged.connect(self.preview)
        self.save_button.clicked.connect(self.save)
        self.reset_button.clicked.connect(lambda: self.preview(CALIBRATED_THRESHOLD))
        self.reload()

    # -- data ----------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the score groups on the io lane (a big product has many rows)."""
        store, product = self.ws.store, self.product
        self.ws.io_lane.submit(
            lambda _p, _c: (score_groups(store, product), store.threshold_history(product.id)),
            channel="threshold-panel",
            on_result=self._loaded,
            on_error=lambda exc: self.counts.setText(f"Could not read the scores: {exc}"),
        )

    def _loaded(self, result: tuple[ScoreGroups, list[Any]]) -> None:
        groups, history = result
        self.groups = groups
        self.plot.clear()
        edges = histogram_edges(groups)
        for name, _label, colour in GROUP_STYLES:
            values = np.asarray(getattr(groups, name), dtype=np.float64)
            if values.size == 0:
                continue
            counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
            self.plot.plot(
                edges,
                counts,
                stepMode="center",
                fillLevel=0,
                brush=(*colour, 90),
                pen=pg.mkPen(colour, width=1.5),
            )
        self.plot.addItem(self.default_line)
        self.plot.addItem(self.line)
        self.plot.setXRange(float(edges[0]), float(edges[-1]), padding=0.02)
        if history:
            last = history[-1]
            self.history.setText(
                f"Set to {last.threshold:.2f} by {last.author} on "
                f"{last.created_at[:16].replace('T', ' ')} for {last.model_version or '-'}"
                + (f" ({last.reason})" if last.reason else "")
                + f"; {len(history)} setting(s) in the audit trail."
            )
        else:
            self.history.setText("Never moved: the calibrated threshold of the experts.")
        self.preview(groups.threshold)

    # -- interaction ---------------------------------------------------------------------------
    def preview(self, threshold: float) -> None:
        """Move line and number to ``threshold`` and say what it would flag."""
        threshold = round(float(threshold), 4)
        if abs(self.line.value() - threshold) > 1e-9:
            self.line.setValue(threshold)
        if abs(self.value.value() - threshold) > 0.005:
            self.value.blockSignals(True)
            self.value.setValue(threshold)
            self.value.blockSignals(False)
        if self.groups is None:
            return
        counts = counts_at(self.groups, threshold)
        self.flagged = counts.flagged
        self.counts.setText(
            f"<b>{counts.flagged}</b> of {counts.scored} images flagged · "
            f"<b>{counts.false_alarms}</b> of {counts.known_normals} known normals flagged "
            f"(false alarms) · <b>{counts.missed}</b> of {counts.known_defects} known defects "
            "missed"
        )
        changed = abs(threshold - self.groups.threshold) > 1e-9
        self.save_button.setEnabled(changed)

    def save(self) -> None:
        """Store the shown value with its author (io lane: it re-flags the whole queue)."""
        value = round(float(self.line.value()), 4)
        store, product, author = self.ws.store, self.product, self.ws.reviewer
        self.save_button.setEnabled(False)

        def job(_p: Any, _c: Any) -> Product:
            set_threshold(store, product, value, author=author)
            return store.get_product(product.id)

        self.ws.io_lane.submit(
            job,
            on_result=self._saved,
            on_error=lambda exc: self.counts.setText(f"Not saved: {exc}"),
            essential=True,
        )

    def _saved(self, product: Product) -> None:
        self.product = product
        self.threshold_saved.emit(product.decision_threshold)
        self.reload()
