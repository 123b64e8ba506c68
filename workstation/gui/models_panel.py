"""Models and training: versions with promote / roll back, live rounds, metrics across rounds.

A round is run by ``services.rounds`` (manifest of the feedback, ``python -m training`` as
a child process, gate, new version) on a thread of its own; its JSON-lines progress feeds
the bar and the loss curve, and cancel kills the child.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from workstation.core import kinds
from workstation.core.errors import UserError
from workstation.core.types import ModelVersion, Product
from workstation.gui.app import Workstation
from workstation.gui.golden_metrics import GoldenMetricsView
from workstation.gui.workers import Lane

COLUMNS = ("Version", "Kind", "Round", "Date", "Metrics", "Parent", "State")
PLOT_BG = "#1e2024"
CURVE_COLOURS = ("#4a90e2", "#e8a33d", "#5cb85c", "#d9534f", "#9b59b6")


class RoundDriver(Protocol):
    """Runs one training round at a time off the GUI thread; callbacks arrive on it."""

    @property
    def running(self) -> bool: ...

    def start(
        self,
        kind: str,
        *,
        on_event: Callable[[dict[str, Any]], None],
        on_done: Callable[[str], None],
    ) -> None: ...

    def cancel(self) -> None: ...

    def shutdown(self) -> None: ...


class ServiceRoundDriver:
    """``services.rounds.run_round`` on a lane of its own.

    The service builds the manifest, starts ``python -m training`` as a child process and
    registers the result; it blocks while the child runs, so it gets a dedicated thread
    (never the model lane, which must stay free for inference). Cancel kills the child
    through the service's RoundHandle.
    """

    def __init__(self, ws: Workstation, product: Product) -> None:
        self.ws, self.product = ws, product
        self._lane: Lane | None = None
        self._handle: Any = None

    @property
    def running(self) -> bool:
        return self._lane is not None and self._lane.busy

    def start(
        self,
        kind: str,
        *,
        on_event: Callable[[dict[str, Any]], None],
        on_done: Callable[[str], None],
    ) -> None:
        from workstation.services import rounds

        options = rounds.RoundOptions.from_settings(self.ws.settings, kind)  # type: ignore[arg-type]
        store, name = self.ws.store, self.product.name
        handle = self._handle = rounds.RoundHandle()
        if self._lane is None:
            self._lane = Lane("rounds")

        def job(progress: Any, _cancel: Any) -> Any:
            return rounds.run_round(
                store, name, options, on_event=lambda e: progress(0, 0, e.to_line()), handle=handle
            )

        self._lane.submit(
            job,
            channel="round",
            on_result=lambda outcome: on_done(outcome.message or outcome.status),
            on_error=lambda exc: on_done(str(exc)),
            on_progress=lambda _d, _t, line: on_event(json.loads(line)),
        )

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def shutdown(self) -> None:
        self.cancel()
        if self._lane is not None:
            self._lane.shutdown()


def _metrics_text(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {_metric_value(v)}" for k, v in sorted(metrics.items()))


def _metric_value(value: object) -> str:
    """Rates with three decimals; counts (stored as floats, e.g. normals 40.0) as integers."""
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) > 1 else f"{value:.3f}"
    return str(value)


def _plot(title: str, left: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(background=PLOT_BG)
    plot.setTitle(title, color="#aeb4be", size="10pt")
    plot.setLabel("left", left, color="#8c929c")
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.setMenuEnabled(False)
    plot.getAxis("left").enableAutoSIPrefix(False)
    return plot


class ModelsPanel(QWidget):
    versions_changed = Signal()
    round_finished = Signal(str)

    def __init__(
        self,
        ws: Workstation,
        product: Product,
        parent: QWidget | None = None,
        *,
        driver: RoundDriver | None = None,
    ) -> None:
        super().__init__(parent)
        self.ws, self.product = ws, product
        self.driver = driver or ServiceRoundDriver(ws, product)
        self.events: list[dict[str, Any]] = []
        self.losses: list[tuple[float, float]] = []
        self.versions: list[ModelVersion] = []

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(90)  # the header and two versions stay in view
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.promote_button = QPushButton("Promote")
        self.rollback_button = QPushButton("Roll back")
        self.promote_button.clicked.connect(self.promote_selected)
        self.rollback_button.clicked.connect(self.roll_back_selected)
        version_buttons = QHBoxLayout()
        version_buttons.addWidget(QLabel("Model versions"))
        version_buttons.addStretch(1)
        version_buttons.addWidget(self.promote_button)
        version_buttons.addWidget(self.rollback_button)

        self.kind = QComboBox()
        for index, kind in enumerate(kinds.all_kinds()):
            self.kind.addItem(kind.name)
            self.kind.setItemData(index, kind.help, Qt.ItemDataRole.ToolTipRole)
        self.kind.setCurrentText("adapter")
        self.start_button = QPushButton("Start round")
        self.start_button.setObjectName("primary")
        self.cancel_button = QPushButton("Cancel round")
        self.cancel_button.setEnabled(False)
        self.start_button.clicked.connect(lambda: self.start_round())
        self.cancel_button.clicked.connect(self.cancel_round)
        self.progress = QProgressBar()
        self.status = QLabel("No round running.")
        self.status.setObjectName("muted")
        training_row = QHBoxLayout()
        training_row.addWidget(QLabel("Train"))
        training_row.addWidget(self.kind)
        training_row.addWidget(self.start_button)
        training_row.addWidget(self.cancel_button)
        training_row.addWidget(self.progress, 1)

        self.loss_plot = _plot("Loss (this round)", "loss")
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen(CURVE_COLOURS[0], width=2))
        self.metrics_plot = _plot("Metrics across versions (golden set)", "value")
        # what the gate judges on the golden set, per version (its key under the plot)
        metrics_box = self.golden = GoldenMetricsView(ws, product, self.metrics_plot)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(version_buttons)
        left_layout.addWidget(self.table, 1)
        # what the active experts' fit chose on its own evidence, and what it left out
        self.fusion = QLabel()
        self.fusion.setObjectName("muted")
        self.fusion.setWordWrap(True)
        left_layout.addWidget(self.fusion)
        left_layout.addLayout(training_row)
        left_layout.addWidget(self.status)
        plots = QSplitter()
        plots.addWidget(self.loss_plot)
        plots.addWidget(metrics_box)
        plots.setMinimumHeight(170)  # axes, title and a readable curve
        # plots under the table: the dock sits below the canvas, where width is scarce and
        # side by side left each plot a few pixels wide
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(left)
        splitter.addWidget(plots)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(splitter)

        self.refresh()

    # -- versions ------------------------------------------------------------------------------
    def refresh(self) -> None:
        store = self.ws.store
        self.versions = store.list_model_versions(self.product.id)
        rounds = {r.id: r for r in store.list_rounds(self.product.id)}
        names = {v.id: v.name for v in self.versions}
        self.table.setRowCount(len(self.versions))
        for row, v in enumerate(self.versions):
            round_no = "" if v.round_id is None else f"#{v.round_id}"
            if v.round_id in rounds:
                round_no += f" ({rounds[v.round_id].status})"
            cells = (
                v.name,
                v.kind,
                round_no,
                v.created_at.replace("T", " ")[:16],
                _metrics_text(v.metrics),
                names.get(v.parent_id, "") if v.parent_id else "",
                v.state,
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, column, item)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        active = [v for v in self.versions if v.kind == "experts" and v.state == "active"]
        fusion = str(active[-1].config.get("fusion") or "") if active else ""
        self.fusion.setText(fusion)
        self.fusion.setToolTip(fusion)
        self.fusion.setVisible(bool(fusion))
        self.golden.refresh()

    def selected_version(self) -> ModelVersion | None:
        rows = self.table.selectionModel().selectedRows()
        return self.versions[rows[0].row()] if rows else None

    def promote_selected(self) -> None:
        """``services.versions.promote`` of the selected version."""
        from workstation.services.versions import promote

        version = self.selected_version()
        if version is None:
            self.status.setText("Select a version to promote.")
            return
        try:
            promote(self.ws.store, version.name)
        except UserError as exc:
            self.status.setText(str(exc))
            return
        self.status.setText(f"{version.name} is now the active {version.kind} model.")
        self._changed()

    def roll_back_selected(self) -> None:
        """``services.versions.rollback_version`` of the selected (active) version: retire it
        and reactivate its parent, if it has one."""
        from workstation.services.versions import rollback_version

        version = self.selected_version()
        if version is None:
            self.status.setText("Select a version to roll back.")
            return
        try:
            active = rollback_version(self.ws.store, version.name)
        except UserError as exc:
            self.status.setText(str(exc))
            return
        message = f"{version.name} rolled back"
        if active is not None:
            message += f"; {active.name} is active again"
        self.status.setText(message + ".")
        self._changed()

    def _changed(self) -> None:
        self.refresh()
        self.versions_changed.emit()

    # -- rounds -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.driver.running

    def start_round(self, kind: str | None = None) -> None:
        """Start a round of ``kind`` (default: the one chosen in the box)."""
        if self.running:
            return
        if kind is not None:
            self.kind.setCurrentText(kind)
        self.events, self.losses = [], []
        self.loss_curve.setData([], [])
        self.progress.setRange(0, 0)
        self.status.setText("Preparing the round (collecting the feedback)…")
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.driver.start(self.kind.currentText(), on_event=self._on_event, on_done=self._on_done)

    def cancel_round(self) -> None:
        if self.running:
            self.status.setText("Cancelling the round…")
            self.driver.cancel()

    def _on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        kind = event.get("event")
        if kind == "start":
            self.status.setText(f"Round running on {event.get('message', '')}")
            self.refresh()
        elif kind == "step":
            step, total = int(event.get("step") or 0), int(event.get("total") or 0)
            if total:
                self.progress.setRange(0, total)
                self.progress.setValue(step)
            loss = event.get("loss")
            if isinstance(loss, int | float):
                self.losses.append((step, float(loss)))
                xs, ys = zip(*self.losses, strict=True)
                self.loss_curve.setData(list(xs), list(ys))
            eta = event.get("eta_s")
            eta_text = f", about {int(eta)} s left" if isinstance(eta, int | float) else ""
            self.status.setText(f"Step {step} / {total}{eta_text}")
        elif kind == "error":
            self.status.setText(str(event.get("message", "the round failed")))

    def _on_done(self, message: str) -> None:
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0 if message == "cancelled" else 1)
        self.status.setText("Round cancelled." if message == "cancelled" else message)
        self._changed()
        self.round_finished.emit(message)

    def shutdown(self) -> None:
        """Stop a running round (the child is killed) and its thread before the window closes."""
        self.driver.shutdown()
