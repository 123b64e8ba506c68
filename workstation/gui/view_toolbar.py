"""The tool bar above the canvas: mask tools, brush size and the heatmap layer controls."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QSlider, QSpinBox, QToolBar, QWidget

from workstation.core.mask_tools import MAX_BRUSH, MIN_BRUSH
from workstation.gui.canvas_content import DEFAULT_HEAT_OPACITY
from workstation.gui.render import COLORMAPS

OPACITY_STEPS = (0.4, 0.7, 1.0)
"""Heatmap opacities the O key cycles through (the default, 0.7, is the middle one)."""
TOOL_LABELS = {
    "brush": "Brush",
    "eraser": "Eraser",
    "polygon": "Polygon",
    "lasso": "Lasso",
    "fill": "Fill",
    "pan": "Pan",
}


class ViewToolbar(QToolBar):
    tool_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Tools", parent)
        self.setObjectName("tools")
        self.setMovable(False)
        self.tool_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        group.setExclusive(True)
        for tool, label in TOOL_LABELS.items():
            action = QAction(label, self)
            action.setCheckable(True)
            action.triggered.connect(lambda _=False, t=tool: self.tool_chosen.emit(t))
            group.addAction(action)
            self.addAction(action)
            self.tool_actions[tool] = action
        self.tool_actions["brush"].setChecked(True)
        self.brush = QSpinBox()
        self.brush.setRange(MIN_BRUSH, MAX_BRUSH)
        self.brush.setValue(24)
        self.brush.setSuffix(" px")
        self.brush.setToolTip("Brush size ( [ and ] )")
        self.brush.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.addWidget(self._label("Size"))
        self.addWidget(self.brush)
        self.addSeparator()
        self.heatmap = QCheckBox("Heatmap")
        self.heatmap.setChecked(True)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(DEFAULT_HEAT_OPACITY * 100))
        self.opacity.setFixedWidth(110)
        self.opacity.setToolTip("Heatmap opacity (O cycles)")
        self.colormap = QComboBox()
        self.colormap.addItems(COLORMAPS)
        self.colormap.setToolTip(
            "Colormap (C cycles); inferno, cividis and viridis stay readable with colour-blindness"
        )
        self.contour = QCheckBox("Threshold contour")
        self.contour.setChecked(True)
        self.mask = QCheckBox("Mask")
        self.mask.setChecked(True)
        self.reference = QCheckBox("Reference")
        self.reference.setChecked(True)
        for widget in (
            self.heatmap,
            self.opacity,
            self.colormap,
            self.contour,
            self.mask,
            self.reference,
        ):
            widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.addWidget(self.heatmap)
        self.addWidget(self.opacity)
        self.addWidget(self.colormap)
        self.addWidget(self.contour)
        self.addSeparator()
        self.addWidget(self.mask)
        self.addWidget(self.reference)

    @staticmethod
    def _label(text: str) -> QLabel:
        label = QLabel(text)
        label.setContentsMargins(8, 0, 4, 0)
        return label

    def show_tool(self, tool: str) -> None:
        self.tool_actions[tool].setChecked(True)

    def cycle_opacity(self, current: float) -> None:
        nxt = next((s for s in OPACITY_STEPS if s > current + 1e-3), OPACITY_STEPS[0])
        self.opacity.setValue(round(nxt * 100))

    def cycle_colormap(self, current: str) -> None:
        i = COLORMAPS.index(current) if current in COLORMAPS else -1
        self.colormap.setCurrentText(COLORMAPS[(i + 1) % len(COLORMAPS)])
