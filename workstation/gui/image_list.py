"""The image list: a paged table model over the review queue, and its filter bar.

The model asks its source for one count and then for pages of rows as the view scrolls,
keeping a bounded window of pages, so 100,000 images cost a few hundred rows of memory and
a scroll never waits on more than one small query.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from workstation.core.errors import UserError
from workstation.services.review import QueueFilter
from workstation.store.rows import ImageRow

PAGE = 256
MAX_PAGES = 64
COLUMNS = ("Image", "Score", "Model", "Review", "Defect")
VERDICT_COLOURS = {
    "accepted": QColor(120, 200, 140),
    "normal": QColor(120, 170, 230),
    "anomalous": QColor(240, 120, 110),
    "skipped": QColor(150, 150, 150),
}
Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()


class RowSource(Protocol):
    def count(self, flt: QueueFilter) -> int: ...

    def rows(self, flt: QueueFilter, *, offset: int, limit: int) -> list[ImageRow]: ...


class ImageListModel(QAbstractTableModel):
    """Table of the queue under the current filter; see the module docstring."""

    def __init__(self, source: RowSource | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self._source = source
        self._filter = QueueFilter()
        self._count = 0
        self._pages: OrderedDict[int, list[ImageRow]] = OrderedDict()
        self.pages_loaded = 0

    # -- configuration -------------------------------------------------------------------------
    def set_source(self, source: RowSource | None, flt: QueueFilter | None = None) -> None:
        self.beginResetModel()
        self._source = source
        if flt is not None:
            self._filter = flt
        self._reload()
        self.endResetModel()

    def set_filter(self, flt: QueueFilter) -> None:
        self.beginResetModel()
        self._filter = flt
        self._reload()
        self.endResetModel()

    @property
    def filter(self) -> QueueFilter:
        return self._filter

    def _reload(self) -> None:
        self._pages.clear()
        self._count = self._source.count(self._filter) if self._source else 0

    # -- rows --------------------------------------------------------------------------------------
    def row_at(self, row: int) -> ImageRow | None:
        if not 0 <= row < self._count or self._source is None:
            return None
        page_no, within = divmod(row, PAGE)
        page = self._pages.get(page_no)
        if page is None:
            page = self._source.rows(self._filter, offset=page_no * PAGE, limit=PAGE)
            self.pages_loaded += 1
            self._pages[page_no] = page
            while len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(page_no)
        return page[within] if within < len(page) else None

    def find_row(self, image_id: int) -> int | None:
        """Row of an image among the pages already loaded (None if not loaded / filtered out)."""
        for page_no, page in self._pages.items():
            for i, row in enumerate(page):
                if row.image.id == image_id:
                    return page_no * PAGE + i
        return None

    def replace_row(self, row: int, value: ImageRow) -> None:
        """Show a changed row in place: rows keep their position until the filter is reapplied."""
        page_no, within = divmod(row, PAGE)
        page = self._pages.get(page_no)
        if page is None or within >= len(page):
            return
        page[within] = value
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    # -- Qt model interface ------------------------------------------------------------------------
    def rowCount(self, parent: Index = _ROOT) -> int:
        return 0 if parent.isValid() else self._count

    def columnCount(self, parent: Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.row_at(index.row())
        if row is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, column)
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == 2 and row.anomalous is not None:
                return VERDICT_COLOURS["anomalous" if row.anomalous else "normal"]
            if column == 3 and row.review_verdict:
                return VERDICT_COLOURS.get(row.review_verdict)
            if column == 3:
                return QColor(140, 140, 140)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == 1:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and column == 0:
            return row.image.path
        if role == Qt.ItemDataRole.ToolTipRole and column == 3 and _queued(row):
            return f"Unreviewed; queued where it is because: {row.priority_reason}"
        if role == Qt.ItemDataRole.ToolTipRole and column == 3 and row.conflict:
            return "stations disagree on this image; your review decides"
        if role == Qt.ItemDataRole.UserRole:
            return row.image.id
        return None

    @staticmethod
    def _text(row: ImageRow, column: int) -> str:
        if column == 0:  # folder too: cameras and defect folders reuse file names
            parts = row.image.path.replace("\\", "/").rsplit("/", 2)
            return "/".join(parts[-2:])
        if column == 1:
            return "" if row.score is None else f"{row.score:.3f}"
        if column == 2:
            return "" if row.anomalous is None else ("anomalous" if row.anomalous else "normal")
        if column == 3:
            verdict = row.review_verdict or "unreviewed"
            if row.conflict:
                return f"{verdict} (conflict)"
            # an unreviewed image says why the queue put it here, so the order can be trusted
            if _queued(row):
                return row.priority_reason
            return verdict
        return row.defect_type or ""


def _queued(row: ImageRow) -> bool:
    return not row.review_verdict and bool(row.priority_reason)


class _OptionalSpin(QDoubleSpinBox):
    """A score bound where the lowest value means "no bound" and reads as "any"."""

    def __init__(self) -> None:
        super().__init__()
        self.setRange(-1.0, 1e6)
        self.setDecimals(2)
        self.setSingleStep(0.05)
        self.setSpecialValueText("any")
        self.setValue(-1.0)
        self.setKeyboardTracking(False)

    def bound(self) -> float | None:
        return None if self.value() == self.minimum() else self.value()


class ImageListPanel(QWidget):
    """Filter bar above the paged table; emits ``filter_changed`` with a valid filter."""

    filter_changed = Signal(object)
    filter_error = Signal(str)

    def __init__(self, model: ImageListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.unreviewed = QCheckBox("Unreviewed only")
        self.conflicts = QCheckBox("Conflicts")
        self.conflicts.setToolTip("only images on which stations' verdicts disagree")
        self.prediction = QComboBox()
        self.prediction.addItems(["All predictions", "Predicted anomalous", "Predicted normal"])
        self.defect = QComboBox()
        self.score_min, self.score_max = _OptionalSpin(), _OptionalSpin()
        self.table = QTableView()
        self.table.setModel(model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        # "missing_material/0…" hid which file it was; keep the folder start and the name end
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(24)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setHighlightSections(False)

        # the spin boxes size themselves for their whole range and the combos for their
        # longest entry; left alone they kept the list ~500 px wide and the canvas small
        for widget, width in ((self.score_min, 72), (self.score_max, 72), (self.prediction, 110)):
            widget.setMinimumWidth(width)
        self.defect.setMinimumWidth(140)
        row1 = QHBoxLayout()
        row1.addWidget(self.unreviewed)
        row1.addWidget(self.conflicts)
        row1.addWidget(self.prediction, 1)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Score"))
        row2.addWidget(self.score_min)
        row2.addWidget(QLabel("to"))
        row2.addWidget(self.score_max)
        row2.addWidget(self.defect, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        layout.addLayout(row1)
        layout.addLayout(row2)
        layout.addWidget(self.table, 1)
        self.set_defect_types(())
        self.unreviewed.toggled.connect(self._changed)
        self.conflicts.toggled.connect(self._changed)
        self.prediction.currentIndexChanged.connect(self._changed)
        self.defect.currentIndexChanged.connect(self._changed)
        self.score_min.valueChanged.connect(self._changed)
        self.score_max.valueChanged.connect(self._changed)

    def set_defect_types(self, names: tuple[str, ...]) -> None:
        self.defect.blockSignals(True)
        self.defect.clear()
        self.defect.addItem("Any defect type", None)
        for name in names:
            self.defect.addItem(name, name)
        self.defect.blockSignals(False)

    def current_filter(self) -> QueueFilter:
        predicted = {0: None, 1: True, 2: False}[self.prediction.currentIndex()]
        return QueueFilter(
            unreviewed=self.unreviewed.isChecked(),
            predicted_anomalous=predicted,
            score_min=self.score_min.bound(),
            score_max=self.score_max.bound(),
            defect_type=self.defect.currentData(),
            conflicts=self.conflicts.isChecked(),
        )

    def set_filter(self, flt: QueueFilter) -> None:
        """Show ``flt`` in the controls without emitting a change per control."""
        widgets = (
            self.unreviewed,
            self.conflicts,
            self.prediction,
            self.defect,
            self.score_min,
            self.score_max,
        )
        for widget in widgets:
            widget.blockSignals(True)
        self.unreviewed.setChecked(flt.unreviewed)
        self.conflicts.setChecked(flt.conflicts)
        self.prediction.setCurrentIndex({None: 0, True: 1, False: 2}[flt.predicted_anomalous])
        index = self.defect.findData(flt.defect_type) if flt.defect_type else 0
        self.defect.setCurrentIndex(max(0, index))
        self.score_min.setValue(-1.0 if flt.score_min is None else flt.score_min)
        self.score_max.setValue(-1.0 if flt.score_max is None else flt.score_max)
        for widget in widgets:
            widget.blockSignals(False)

    def _changed(self) -> None:
        try:
            flt = self.current_filter()
        except UserError as exc:
            self.filter_error.emit(str(exc))
            return
        self.filter_changed.emit(flt)
