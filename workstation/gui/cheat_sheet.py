"""The ``?`` cheat sheet: every action and its keys, grouped, generated from the bindings."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from workstation.gui.shortcuts import ACTIONS

ROW = "<tr><td style='padding:2px 14px 2px 0'>{keys}</td><td>{label}</td></tr>"


def cheat_sheet_html(bindings: dict[str, tuple[str, ...]]) -> str:
    groups: dict[str, list[str]] = {}
    for spec in ACTIONS:
        bound = bindings.get(spec.id, ())
        keys = " / ".join(f"<b>{html.escape(k)}</b>" for k in bound if k) or "—"
        row = ROW.format(keys=keys, label=html.escape(spec.label))
        groups.setdefault(spec.group, []).append(row)
    extras = "".join(
        ROW.format(keys=keys, label=label)
        for keys, label in (
            ("<b>Space</b> + drag, middle drag", "Pan"),
            ("<b>Wheel</b>", "Zoom at the cursor"),
            ("<b>Right drag</b>", "Erase with the brush"),
        )
    )
    columns = []
    for group, rows in groups.items():
        body = "".join(rows) + (extras if group == "View" else "")
        cell = f"<h3>{group}</h3><table>{body}</table>"
        columns.append(f"<td valign='top' style='padding-right:28px'>{cell}</td>")
    return "<table><tr>" + "".join(columns) + "</tr></table>"


class CheatSheet(QDialog):
    def __init__(self, bindings: dict[str, tuple[str, ...]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard cheat sheet")
        label = QLabel(cheat_sheet_html(bindings))
        label.setTextFormat(Qt.TextFormat.RichText)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(label)
        layout.addWidget(buttons)
