"""The dark theme: Fusion style, a matching palette and ``resources/style.qss``.

Dark because inspectors look at bright product photos all shift long and the chrome should
not compete with them; the accent colour is reserved for focus and selection.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from workstation.paths import resources_dir

BASE = QColor(30, 32, 36)
WINDOW = QColor(37, 40, 45)
TEXT = QColor(222, 225, 230)
MUTED = QColor(140, 146, 156)
ACCENT = QColor(74, 144, 226)


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: WINDOW,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: BASE,
        QPalette.ColorRole.AlternateBase: QColor(35, 38, 43),
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: QColor(48, 52, 58),
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.ToolTipBase: QColor(50, 54, 60),
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.PlaceholderText: MUTED,
        QPalette.ColorRole.Link: ACCENT,
    }
    for role, colour in roles.items():
        palette.setColor(role, colour)
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, MUTED)
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, MUTED)
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, MUTED)
    app.setPalette(palette)
    font = QFont(app.font())
    font.setPointSizeF(max(10.0, font.pointSizeF()))
    app.setFont(font)
    sheet = resources_dir() / "style.qss"
    if sheet.is_file():
        app.setStyleSheet(sheet.read_text(encoding="utf-8"))


def app_icon() -> QIcon:
    """The application icon in every size shipped, so each platform picks a sharp one."""
    icon = QIcon()
    folder = resources_dir() / "icons" / "app"
    for size in (16, 32, 48, 64, 128, 256, 512):
        file = folder / f"iad-workstation-{size}.png"
        if file.is_file():
            icon.addFile(str(file))
    return icon
