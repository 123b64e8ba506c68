"""The ``?`` cheat sheet: every action and its keys, grouped, generated from the bindings."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from workstation.gui.shortcuts import ACTIONS


def cheat_sheet_html(bindings: dict[str, tuple[str, ...]]) -> str:
    groups: dict[str, list[str]] = {}
    for spec in ACTIONS:
        keys = " / ".join(f"<b>{html.escape(k)}</b>" for k in bindings.get(spec.id, ()) if k) or "—"
        groups.setdefault(spec.group, []).append(
            f"<tr><td style='padding:2px 14px 2px 0'>{keys}</td><td>{html.escape(spec.label)}</td></tr>"
        )
    extras = (
        "<tr><td style='padding:2px 14px 2px 0'><b>Space</b> + drag, middle drag</td><td>Pan</td></tr>"
        "<tr><td style='padding:2px 14px 2px 0'><b>Wheel</b></td><td>Zoom at the cursor</td></tr>"
        "<tr><td style='padding:2px 14px 2px 0'><b>Right drag</b></td><td>Erase with the brush</td></tr>"
    )
    columns = []
    for group, rows in groups.items():
        body = "".join(rows) + (extras if group == "View" else "")
        columns.append(f"<td valign='top' style='padding-right:28px'><h3>{group}</h3><table>{body}</table></td>")
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
