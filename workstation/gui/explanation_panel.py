"""Explanation panel: the model's draft (read-only, with its source) and the inspector's edit.

Edits are announced through ``edited`` after a short pause in typing (debounced, at most one
second), and :meth:`flush` announces a pending edit at once, which the window calls before
leaving an image, so at most one second of typing can ever be lost.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from workstation.core.masks import ALL_LOCATIONS
from workstation.core.types import LEARNED_TYPES_SOURCE, Explanation, ExplanationRevision

VERDICTS = ("anomalous", "normal")
SEVERITIES = ("low", "medium", "high")
MAX_DEBOUNCE_MS = 1000


def describe_source(revision: ExplanationRevision | None) -> str:
    if revision is None:
        return "no draft yet"
    source = revision.source
    kind, _, version = source.partition(":")
    if kind == LEARNED_TYPES_SOURCE:  # the type (and words) came from a trained type head
        source = f"learned types ({version})"
    when = revision.created_at.replace("T", " ")[:16]
    return f"{source} · {when}" if when else source


class ExplanationPanel(QWidget):
    edited = Signal(object)
    """Explanation typed by the inspector, after the debounce pause."""

    def __init__(self, debounce_ms: int = 800, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._loading = False
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(min(MAX_DEBOUNCE_MS, max(50, debounce_ms)))
        self._timer.timeout.connect(self.flush)
        self._draft: Explanation | None = None

        draft_box = QGroupBox("Model draft")
        self.draft_source = QLabel("no draft yet")
        self.draft_source.setObjectName("muted")
        self.draft_source.setWordWrap(True)
        self.draft_summary = QLabel("")
        self.draft_summary.setWordWrap(True)
        self.draft_text = QPlainTextEdit()
        self.draft_text.setReadOnly(True)
        self.draft_text.setMaximumHeight(110)
        self.use_draft = QPushButton("Use draft")
        self.use_draft.setToolTip("Copy the model's draft into your explanation")
        self.use_draft.clicked.connect(self.copy_draft)
        top = QHBoxLayout()
        top.addWidget(self.draft_source, 1)
        top.addWidget(self.use_draft)
        draft_layout = QVBoxLayout(draft_box)
        draft_layout.addLayout(top)
        draft_layout.addWidget(self.draft_summary)
        draft_layout.addWidget(self.draft_text)

        edit_box = QGroupBox("Inspector")
        self.verdict = QComboBox()
        self.verdict.addItems(VERDICTS)
        self.defect_type = QComboBox()
        self.defect_type.setEditable(True)
        self.location = QComboBox()
        self.location.setEditable(True)
        self.location.addItems(["", *ALL_LOCATIONS])
        self.severity = QComboBox()
        self.severity.addItems(SEVERITIES)
        self.description = QPlainTextEdit()
        self.description.setPlaceholderText("What is wrong, where, and why it matters")
        self.state = QLabel("")
        self.state.setObjectName("muted")
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Verdict", self.verdict)
        form.addRow("Defect type", self.defect_type)
        form.addRow("Location", self.location)
        form.addRow("Severity", self.severity)
        edit_layout = QVBoxLayout(edit_box)
        edit_layout.addLayout(form)
        edit_layout.addWidget(self.description, 1)
        edit_layout.addWidget(self.state)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(8)
        layout.addWidget(draft_box)
        layout.addWidget(edit_box, 1)

        for combo in (self.verdict, self.severity):
            combo.currentIndexChanged.connect(self._changed)
        for combo in (self.defect_type, self.location):
            combo.currentTextChanged.connect(self._changed)
        self.description.textChanged.connect(self._changed)
        self.setEnabled(False)

    # -- showing -------------------------------------------------------------------------------
    def show_explanations(
        self,
        draft: ExplanationRevision | None,
        edit: ExplanationRevision | None,
        vocabulary: tuple[str, ...] = (),
    ) -> None:
        """Load one image's texts; the edit starts from the inspector's last one, else the draft."""
        self._loading = True
        self._timer.stop()
        self._dirty = False
        self.setEnabled(True)
        if draft is not None:
            self.show_draft(draft)
        else:
            self._draft = None
            self.draft_source.setText(f"Source: {describe_source(None)}")
            self.use_draft.setEnabled(False)
            self.draft_summary.setText("")
            self.draft_text.setPlainText("")
        self.defect_type.clear()
        self.defect_type.addItems(["", *vocabulary])
        start = edit.explanation if edit else self._draft
        self._fill(start or Explanation(verdict="normal"))
        self.state.setText("Edited by inspector" if edit else "")
        self._loading = False

    def start_draft(self) -> None:
        """A new draft is being written: empty the draft box for the streamed text."""
        self.draft_source.setText("Source: writing…")
        self.draft_summary.setText("")
        self.draft_text.setPlainText("")

    def show_draft(self, draft: ExplanationRevision) -> None:
        """Show a finished draft without touching what the inspector is typing."""
        self._draft = draft.explanation
        self.draft_source.setText(f"Source: {describe_source(draft)}")
        self.use_draft.setEnabled(True)
        e = draft.explanation
        parts = [e.verdict, e.defect_type, e.location]
        if e.verdict == "anomalous":
            parts.append(f"severity {e.severity}")
        self.draft_summary.setText(" · ".join(p for p in parts if p))
        self.draft_text.setPlainText(e.description)

    def clear(self) -> None:
        self.flush()
        self.setEnabled(False)

    def focus_text(self) -> None:
        """Put the caret at the end of the inspector's text, ready to type (the T key)."""
        self.description.setFocus()
        cursor = self.description.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.description.setTextCursor(cursor)

    def append_draft_text(self, text: str) -> None:
        """Streamed VLM tokens appear in the draft as they arrive."""
        cursor = self.draft_text.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        cursor.insertText(text)

    def _fill(self, explanation: Explanation) -> None:
        self.verdict.setCurrentText(explanation.verdict)
        self.defect_type.setCurrentText(explanation.defect_type)
        self.location.setCurrentText(explanation.location)
        self.severity.setCurrentText(explanation.severity)
        self.description.setPlainText(explanation.description)

    def current(self) -> Explanation:
        return Explanation(
            verdict=self.verdict.currentText(),  # type: ignore[arg-type]
            defect_type=self.defect_type.currentText().strip(),
            location=self.location.currentText().strip(),
            severity=self.severity.currentText(),  # type: ignore[arg-type]
            description=self.description.toPlainText().strip(),
        )

    # -- editing ---------------------------------------------------------------------------------
    def copy_draft(self) -> None:
        if self._draft is not None:
            self._fill(self._draft)
            self.flush()

    def set_verdict(self, verdict: str) -> None:
        """Keep the verdict field in step with a review key press, without a second save."""
        self._loading = True
        self.verdict.setCurrentText(verdict)
        self._loading = False

    def _changed(self) -> None:
        if self._loading:
            return
        self._dirty = True
        self.state.setText("Editing…")
        self._timer.start()

    @property
    def pending(self) -> bool:
        return self._dirty

    def flush(self) -> None:
        """Announce a pending edit now (called by the timer and before leaving an image)."""
        self._timer.stop()
        if not self._dirty:
            return
        self._dirty = False
        self.state.setText("Saved")
        self.edited.emit(self.current())
