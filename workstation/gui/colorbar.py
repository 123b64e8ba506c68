"""The heatmap's colour bar: what a colour means, where the threshold is, this image's peak.

A strip under the canvas with the heat layer's own colours (``render.heat_colors``) over
the display range of the shown image. The threshold is a white tick mid-bar; the image's
peak and the score under the cursor are markers on the same scale, so an inspector reads
"this spot is 1.4, the threshold is 1.0" without a legend.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from workstation.gui.render import DEFAULT_COLORMAP, HeatmapDisplay, heat_colors, rgb_qimage

BAR_HEIGHT = 10
MARGIN = 10
PEAK_COLOR = QColor(255, 196, 64)
CURSOR_COLOR = QColor(120, 220, 255)


class ColorBar(QWidget):
    """See the module docstring; ``set_display(None)`` shows "no heatmap"."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.display: HeatmapDisplay | None = None
        self.colormap = DEFAULT_COLORMAP
        self.cursor: float | None = None
        self._strip = self._make_strip()
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(self.fontMetrics().height() * 2 + BAR_HEIGHT + 12)
        self.setToolTip(
            "Heatmap colours: transparent at the product's normal level, the threshold "
            "mid-bar (white tick); ▲ this image's peak, ▼ the score under the cursor"
        )

    def sizeHint(self) -> QSize:
        return QSize(400, self.height())

    def _make_strip(self) -> QImage:
        return rgb_qimage(heat_colors(self.colormap)[None, :, :])

    def set_colormap(self, name: str) -> None:
        self.colormap = name
        self._strip = self._make_strip()
        self.update()

    def set_display(self, display: HeatmapDisplay | None) -> None:
        self.display = display
        self.cursor = None
        self.update()

    def set_cursor(self, value: float | None) -> None:
        if value != self.cursor:
            self.cursor = value
            self.update()

    def describe(self) -> str:
        """The bar's content in words (tests and the accessible name)."""
        d = self.display
        if d is None:
            return "no heatmap"
        parts = [f"{d.vmin:.2f} … {d.vmax:.2f}", f"peak {d.peak:.2f}"]
        if d.threshold is not None:
            parts.insert(1, f"threshold {d.threshold:.2f}")
        if self.cursor is not None:
            parts.append(f"cursor {self.cursor:.2f}")
        return ", ".join(parts)

    def _x(self, value: float, bar: QRectF) -> float:
        d = self.display
        assert d is not None
        share = (value - d.vmin) / max(d.vmax - d.vmin, 1e-9)
        return bar.left() + min(1.0, max(0.0, share)) * bar.width()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        metrics = self.fontMetrics()
        text_h = metrics.height()
        muted = self.palette().placeholderText().color()
        d = self.display
        if d is None:
            painter.setPen(muted)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no heatmap yet")
            return
        bar = QRectF(MARGIN, text_h + 8, max(10, self.width() - 2 * MARGIN), BAR_HEIGHT)
        painter.drawImage(bar, self._strip)
        painter.setPen(QPen(muted, 1))
        painter.drawRect(bar)
        below = bar.bottom() + 2
        low, high = f"{d.vmin:.2f}", f"{d.vmax:.2f}"
        painter.drawText(QPointF(bar.left(), below + metrics.ascent()), low)
        painter.drawText(
            QPointF(bar.right() - metrics.horizontalAdvance(high), below + metrics.ascent()), high
        )
        if d.threshold is not None:
            x = self._x(d.threshold, bar)
            painter.setPen(QPen(QColor(255, 255, 255), 2))
            painter.drawLine(QPointF(x, bar.top() - 3), QPointF(x, bar.bottom() + 3))
            label = f"threshold {d.threshold:.2f}"
            width = metrics.horizontalAdvance(label)
            painter.drawText(QPointF(x - width / 2, below + metrics.ascent()), label)
        taken = self._marker(
            painter, self._x(d.peak, bar), bar.top(), PEAK_COLOR, f"peak {d.peak:.2f}"
        )
        if self.cursor is not None:
            self._marker(
                painter,
                self._x(self.cursor, bar),
                bar.top(),
                CURSOR_COLOR,
                f"cursor {self.cursor:.2f}",
                avoid=taken,
            )

    def _marker(
        self,
        painter: QPainter,
        x: float,
        top: float,
        color: QColor,
        text: str,
        avoid: tuple[float, float] | None = None,
    ) -> tuple[float, float]:
        """A triangle pointing at the bar with its value above, kept inside the widget and
        beside the ``avoid`` span (another marker's text); returns its own text span."""
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawPolygon(
            QPolygonF([QPointF(x - 5, top - 7), QPointF(x + 5, top - 7), QPointF(x, top + 1)])
        )
        width = self.fontMetrics().horizontalAdvance(text)
        left = x - width / 2
        if avoid is not None and left < avoid[1] + 6 and left + width > avoid[0] - 6:
            before = avoid[0] - 8 - width
            left = before if before >= 0 else avoid[1] + 8
        left = min(max(0.0, left), self.width() - width)
        painter.setPen(color)
        painter.drawText(QPointF(left, top - 8), text)
        return left, left + width
