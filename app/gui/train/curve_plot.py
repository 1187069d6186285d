"""A small line plot drawn with QPainter (QtCharts is not in PySide6-Essentials): named series
of (x, y) points, axes with their ranges, a legend, and the latest value of each series.

The legend sits beside the plot area (below it when the widget is narrow), never over the
curves (``plot_layout()`` says where each goes)."""

from __future__ import annotations

import logging
import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

log = logging.getLogger(__name__)

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 52, 12, 24, 22
MIN_AREA_WIDTH = 160  # narrower than this beside the legend: the legend goes below
LEGEND_LINE = 14


def format_number(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 10_000:
        return f"{value:.3g}"
    return f"{value:.1e}"


class CurvePlot(QWidget):
    """``add_point(series, x, y)`` appends and repaints; ``clear()`` empties every series."""

    def __init__(self, title: str, x_label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.x_label = x_label
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.setMinimumSize(260, 150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(420, 200)

    def add_point(self, name: str, x: float, y: float) -> None:
        if not math.isfinite(y):
            return
        points = self.series.setdefault(name, [])
        while points and points[-1][0] >= x:  # a resumed run redoes steps: keep the newest
            points.pop()
        points.append((float(x), float(y)))
        self.update()

    def clear(self) -> None:
        self.series.clear()
        self.update()

    def point_count(self) -> int:
        return sum(len(points) for points in self.series.values())

    # ----------------------------------------------------------------- drawing
    def _ranges(self) -> tuple[float, float, float, float]:
        xs = [x for points in self.series.values() for x, _ in points]
        ys = [y for points in self.series.values() for _, y in points]
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(min(ys), 0.0), max(ys)
        if x1 == x0:
            x0, x1 = x0 - 1, x1 + 1
        if y1 == y0:
            y1 = y0 + 1
        return x0, x1, y0, y1

    def _labels(self) -> list[str]:
        return [f"{name} {format_number(points[-1][1])}" for name, points in self.series.items()]

    def plot_layout(self) -> tuple[QRectF, list[QRectF]]:
        """The plot area and each series' legend box, side by side or the legend below."""
        metrics = self.fontMetrics()
        labels = self._labels()
        legend = max((metrics.horizontalAdvance(label) + 8 for label in labels), default=0)
        width, height = self.width(), self.height()
        beside = width - MARGIN_LEFT - MARGIN_RIGHT - legend >= MIN_AREA_WIDTH
        if not labels:
            beside, legend = True, 0
        below = 0 if beside else len(labels) * LEGEND_LINE + 4
        area = QRectF(
            MARGIN_LEFT,
            MARGIN_TOP,
            max(1, width - MARGIN_LEFT - MARGIN_RIGHT - (legend if beside else 0)),
            max(1, height - MARGIN_TOP - MARGIN_BOTTOM - below),
        )
        if beside:
            left, top = area.right() + 6, area.top()
        else:
            left, top = area.left(), area.bottom() + MARGIN_BOTTOM
        boxes = [
            QRectF(left, top + i * LEGEND_LINE, max(legend - 6, 1), LEGEND_LINE)
            for i in range(len(labels))
        ]
        return area, boxes

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        text_color = self.palette().text().color()
        painter.setPen(text_color)
        painter.drawText(
            QRectF(0, 2, self.width(), MARGIN_TOP - 4), Qt.AlignmentFlag.AlignCenter, self.title
        )
        area, boxes = self.plot_layout()
        painter.setPen(QPen(QColor("#999999"), 1))
        painter.drawRect(area)
        if not self.point_count():
            painter.setPen(text_color)
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "No data yet")
            painter.end()
            return
        x0, x1, y0, y1 = self._ranges()

        def to_screen(x: float, y: float) -> QPointF:
            return QPointF(
                area.left() + (x - x0) / (x1 - x0) * area.width(),
                area.bottom() - (y - y0) / (y1 - y0) * area.height(),
            )

        painter.setPen(text_color)
        left = QRectF(0, area.top() - 8, MARGIN_LEFT - 4, 16)
        painter.drawText(left, Qt.AlignmentFlag.AlignRight, format_number(y1))
        painter.drawText(
            left.translated(0, area.height()), Qt.AlignmentFlag.AlignRight, format_number(y0)
        )
        bottom = QRectF(area.left(), area.bottom() + 2, area.width(), MARGIN_BOTTOM - 2)
        painter.drawText(bottom, Qt.AlignmentFlag.AlignLeft, format_number(x0))
        painter.drawText(bottom, Qt.AlignmentFlag.AlignHCenter, self.x_label)
        painter.drawText(bottom, Qt.AlignmentFlag.AlignRight, format_number(x1))
        colors = [QColor(COLORS[i % len(COLORS)]) for i in range(len(self.series))]
        for color, points in zip(colors, self.series.values(), strict=True):
            painter.setPen(QPen(color, 1.6))
            path = QPainterPath(to_screen(*points[0]))
            for x, y in points[1:]:
                path.lineTo(to_screen(x, y))
            painter.drawPath(path)
            if len(points) == 1:
                painter.drawEllipse(to_screen(*points[0]), 2.5, 2.5)
        for color, label, box in zip(colors, self._labels(), boxes, strict=True):
            painter.setPen(color)
            painter.drawText(box, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, label)
        painter.end()
