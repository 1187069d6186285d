"""The drawing surface: records strokes (points with pressure and time), not only pixels.

Pen and eraser strokes, a pen width, undo/redo through a QUndoStack, and input from a mouse, a
tablet (pressure; the tablet event is accepted so Qt does not also synthesise a mouse stroke) or a
touch screen. An opened or pasted sketch image becomes the canvas background and is part of the
query; a photo (``SketchState.photo``) is the query itself: the search looks for photos like it
(``PhotoQuery``), and the first stroke drawn on it starts a new sketch.

Drawing coordinates: strokes are kept in the coordinates of the canvas as it was when the drawing
began (``SketchState.frame``, in which an opened image is fitted too); the view scales that frame
to fit the canvas, centred, so a window made smaller (or larger) shows the whole drawing, and a
stroke drawn after a resize lands where it was drawn. ``engine`` normalises strokes, so their
scale does not matter to the search. Widths are in drawing units as well (a pen of 3 screen
pixels drawn at half scale is 6 units wide), so the eraser erases the same in the search.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QElapsedTimer, QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QInputDevice,
    QMouseEvent,
    QPainter,
    QPen,
    QPointingDevice,
    QTabletEvent,
    QUndoCommand,
    QUndoStack,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from engine.strokes import Point, Stroke

log = logging.getLogger(__name__)

INK = QColor(20, 20, 20)
PAPER = QColor(255, 255, 255)
HINT = QColor(150, 150, 150)
ERASER_FACTOR = 4.0  # an eraser is this many times wider than the pen
FIT_MARGIN = 0.1
PHOTO_HINT = "Draw on it to start a new sketch."


@dataclass(frozen=True)
class DrawnStroke:
    """A stroke as the engine sees it, plus the on-screen width it was drawn with."""

    stroke: Stroke
    width: float


@dataclass(frozen=True)
class SketchState:
    strokes: tuple[DrawnStroke, ...] = ()
    background: QImage | None = None  # an opened or pasted image, shown under the strokes
    frame: QRectF | None = None  # the drawing's area in its coordinates (None: nothing yet)
    photo: bool = False  # the background is a photo to search by (not a sketch)
    source: Path | None = None  # the file the background was read from, if any

    @property
    def is_empty(self) -> bool:
        return self.background is None and not any(not d.stroke.eraser for d in self.strokes)


@dataclass(frozen=True)
class PhotoQuery:
    """A photo to search by ("more like this photo"): RGB uint8 (H, W, 3), and its file when
    it came from one (searched from the file, as the indexer reads it)."""

    image: np.ndarray
    path: Path | None = None


@dataclass(frozen=True)
class View:
    """How drawing coordinates map to the widget: ``widget = drawing * scale + offset``."""

    scale: float
    dx: float
    dy: float

    def to_drawing(self, pos: QPointF) -> tuple[float, float]:
        return (pos.x() - self.dx) / self.scale, (pos.y() - self.dy) / self.scale

    def to_widget(self, x: float, y: float) -> QPointF:
        return QPointF(x * self.scale + self.dx, y * self.scale + self.dy)


def fit_view(frame: QRectF | None, size: QSize) -> View:
    """The scale and offset that show ``frame`` whole in ``size``, centred (identity when
    there is no frame yet)."""
    if frame is None or frame.isEmpty() or size.isEmpty():
        return View(1.0, 0.0, 0.0)
    scale = min(size.width() / frame.width(), size.height() / frame.height())
    dx = (size.width() - frame.width() * scale) / 2 - frame.x() * scale
    dy = (size.height() - frame.height() * scale) / 2 - frame.y() * scale
    return View(scale, dx, dy)


class SetSketchCommand(QUndoCommand):
    """Every edit replaces the whole (immutable, cheap to share) state, so undo is exact."""

    def __init__(self, canvas: SketchCanvas, before: SketchState, after: SketchState, text: str):
        super().__init__(text)
        self._canvas, self._before, self._after = canvas, before, after

    def redo(self) -> None:
        self._canvas._apply(self._after)

    def undo(self) -> None:
        self._canvas._apply(self._before)


def stroke_width(base: float, pressure: float) -> float:
    return max(0.5, base * (0.35 + 0.65 * min(max(pressure, 0.0), 1.0)))


def fit_strokes(strokes: list[Stroke], size: QSize) -> list[Stroke]:
    """Scale and centre strokes (from a file, in any coordinates) to fill ``size``."""
    points = [p for s in strokes for p in s.points]
    if not points or size.isEmpty():
        return list(strokes)
    xs, ys = [p.x for p in points], [p.y for p in points]
    width, height = max(max(xs) - min(xs), 1.0), max(max(ys) - min(ys), 1.0)
    usable = (1 - 2 * FIT_MARGIN) * min(size.width(), size.height())
    scale = usable / max(width, height)
    dx = (size.width() - width * scale) / 2 - min(xs) * scale
    dy = (size.height() - height * scale) / 2 - min(ys) * scale

    def moved(p: Point) -> Point:
        return replace(p, x=p.x * scale + dx, y=p.y * scale + dy)

    def fitted(s: Stroke) -> Stroke:
        width = None if s.width is None else s.width * scale
        return replace(s, points=tuple(moved(p) for p in s.points), width=width)

    return [fitted(s) for s in strokes]


def gray_array(image: QImage) -> np.ndarray:
    """A QImage as a uint8 (H, W) grey numpy array (white paper, dark ink)."""
    grey = image.convertToFormat(QImage.Format.Format_Grayscale8)
    width, height, stride = grey.width(), grey.height(), grey.bytesPerLine()
    buffer = np.frombuffer(grey.constBits(), dtype=np.uint8, count=stride * height)
    return buffer.reshape(height, stride)[:, :width].copy()


def rgb_array(image: QImage) -> np.ndarray:
    """A QImage as a uint8 (H, W, 3) RGB numpy array."""
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = rgb.width(), rgb.height(), rgb.bytesPerLine()
    buffer = np.frombuffer(rgb.constBits(), dtype=np.uint8, count=stride * height)
    return buffer.reshape(height, stride)[:, : 3 * width].reshape(height, width, 3).copy()


def array_image(array: np.ndarray) -> QImage:
    """A uint8 (H, W) grey or (H, W, 3) RGB array as a QImage that owns its pixels."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    height, width = array.shape[:2]
    if array.ndim == 3:
        return QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    return QImage(array.data, width, height, width, QImage.Format.Format_Grayscale8).copy()


class SketchCanvas(QWidget):
    """Emits ``sketchChanged`` after every finished stroke, undo, redo, clear, open or paste."""

    sketchChanged = Signal()

    def __init__(self, parent: QWidget | None = None, undo_stack: QUndoStack | None = None):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_AcceptTouchEvents, True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 240)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.undo_stack = undo_stack or QUndoStack(self)
        self.pen_width = 3.0
        self.eraser = False
        self._state = SketchState()
        self._live: list[Point] = []  # the stroke being drawn, in drawing coordinates
        self._live_eraser = False
        self._live_view = View(1.0, 0.0, 0.0)  # the view it is drawn in
        self._clock = QElapsedTimer()
        self._ink: QImage | None = None  # committed strokes, re-rendered when the state changes

    # ----------------------------------------------------------------- the sketch
    def state(self) -> SketchState:
        return self._state

    def strokes(self) -> list[Stroke]:
        return [d.stroke for d in self._state.strokes]

    def is_empty(self) -> bool:
        return self._state.is_empty

    def query(self) -> list[Stroke] | np.ndarray | PhotoQuery | None:
        """What to search with: the strokes; a grey image when a sketch image is shown; the
        photo when a photo is."""
        state = self._state
        if state.is_empty:
            return None
        if state.photo and state.background is not None:
            return PhotoQuery(rgb_array(state.background), state.source)
        if state.background is None:
            return self.strokes()
        return gray_array(self.render_image())

    def is_photo(self) -> bool:
        """Whether the query is a photo (searched for photos like it)."""
        return self._state.photo and self._state.background is not None

    def set_strokes(self, strokes: list[Stroke], text: str = "Open sketch") -> None:
        fitted = fit_strokes(list(strokes), self.size())
        drawn = tuple(
            DrawnStroke(s, s.width if s.eraser and s.width else self._width_for(s.eraser))
            for s in fitted
        )
        self._push(SketchState(drawn, None, self._widget_frame()), text)

    def set_background(
        self,
        image: QImage,
        text: str = "Open image",
        photo: bool = False,
        source: Path | None = None,
    ) -> None:
        """Show ``image`` (fitted to the canvas); ``photo``: search for photos like it;
        ``source``: the file it was read from."""
        self._push(SketchState((), image, self._widget_frame(), photo, source), text)

    def set_photo_query(self, photo: bool) -> None:
        """Search by the shown image as a photo (True) or as a sketch (False); undoable."""
        state = self._state
        if state.background is not None and state.photo != photo:
            self._push(replace(state, photo=photo), "Search as photo" if photo else "As sketch")

    def clear(self) -> None:
        if self._state != SketchState():
            self._push(SketchState(), "Clear")

    def render_image(self, size: QSize | None = None) -> QImage:
        """The canvas as the user sees it, without hints, on white paper (``size``: the
        drawing fitted to that size instead of the canvas's)."""
        size = size or self.size()
        image = QImage(size, QImage.Format.Format_RGB32)
        image.fill(PAPER)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        view = fit_view(self._state.frame, size)
        painter.translate(view.dx, view.dy)
        painter.scale(view.scale, view.scale)
        self._paint_state(painter, self._state)
        painter.end()
        return image

    def view(self) -> View:
        """How the drawing is shown on the canvas now."""
        return fit_view(self._state.frame, self.size())

    def _widget_frame(self) -> QRectF:
        """The canvas's own area: the frame of a drawing that begins now (its coordinates are
        the canvas's pixels at this size)."""
        return QRectF(0, 0, max(self.width(), 1), max(self.height(), 1))

    # ----------------------------------------------------------------- input
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and _is_real_mouse(event):
            self._begin(event.position(), 1.0, self.eraser)
            event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._live and _is_real_mouse(event):
            self._extend(event.position(), 1.0)
            event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._live and _is_real_mouse(event):
            self._extend(event.position(), 1.0)
            self._finish()
            event.accept()

    def tabletEvent(self, event: QTabletEvent) -> None:
        kind = event.type()
        eraser = self.eraser or event.pointerType() == QPointingDevice.PointerType.Eraser
        if kind == QEvent.Type.TabletPress:
            self._begin(event.position(), event.pressure(), eraser)
        elif kind == QEvent.Type.TabletMove and self._live:
            self._extend(event.position(), event.pressure())
        elif kind == QEvent.Type.TabletRelease and self._live:
            self._finish()
        event.accept()  # or Qt synthesises mouse events and the stroke is drawn twice

    def event(self, event: QEvent) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.TouchBegin, QEvent.Type.TouchUpdate, QEvent.Type.TouchEnd):
            point = event.points()[0]
            pressure = point.pressure() if point.pressure() > 0 else 1.0
            if kind == QEvent.Type.TouchBegin:
                self._begin(point.position(), pressure, self.eraser)
            elif self._live:
                self._extend(point.position(), pressure)
                if kind == QEvent.Type.TouchEnd:
                    self._finish()
            event.accept()
            return True
        if kind == QEvent.Type.TouchCancel:
            self._live = []
            self.update()
            return True
        return super().event(event)

    # ----------------------------------------------------------------- stroke recording
    def _begin(self, pos: QPointF, pressure: float, eraser: bool) -> None:
        if self._state.is_empty or not self._clock.isValid():
            self._clock.start()
        self._live_eraser = eraser
        self._live_view = self.view() if self._state.frame is not None else View(1.0, 0.0, 0.0)
        self._live = [self._point(pos, pressure)]
        self.update()

    def _point(self, pos: QPointF, pressure: float) -> Point:
        x, y = self._live_view.to_drawing(pos)
        return Point(x, y, float(pressure), float(self._clock.elapsed()))

    def _extend(self, pos: QPointF, pressure: float) -> None:
        last = self._live[-1]
        point = self._point(pos, pressure)
        if (point.x, point.y) == (last.x, last.y):
            return
        self._live.append(point)
        margin = self._width_for(self._live_eraser) + 2
        self.update(
            QRectF(self._live_view.to_widget(last.x, last.y), pos)
            .normalized()
            .adjusted(-margin, -margin, margin, margin)
            .toAlignedRect()
        )

    def _finish(self) -> None:
        points, self._live = tuple(self._live), []
        width = self._width_for(self._live_eraser) / self._live_view.scale  # in drawing units
        stroke = Stroke(points, self._live_eraser, width if self._live_eraser else None)
        drawn = DrawnStroke(stroke, width)
        text = "Erase" if self._live_eraser else "Stroke"
        state = self._state
        frame = state.frame if state.frame is not None else self._widget_frame()
        if state.photo:  # a stroke on a photo query starts a new sketch (undo brings it back)
            state = SketchState()
        if not stroke.eraser:  # ink beyond the frame widens it, so all of it stays in view
            reach = width / 2  # (an eraser never does: erasing beside the drawing adds nothing)
            xs, ys = [p.x for p in points], [p.y for p in points]
            ink = QRectF(QPointF(min(xs), min(ys)), QPointF(max(xs), max(ys)))
            frame = frame.united(ink.adjusted(-reach, -reach, reach, reach))
        self._push(replace(state, strokes=(*state.strokes, drawn), frame=frame), text)

    def _width_for(self, eraser: bool) -> float:
        return self.pen_width * (ERASER_FACTOR if eraser else 1.0)

    def _push(self, after: SketchState, text: str) -> None:
        self.undo_stack.push(SetSketchCommand(self, self._state, after, text))

    def _apply(self, state: SketchState) -> None:
        self._state = state
        self._ink = None
        self.update()
        self.sketchChanged.emit()

    # ----------------------------------------------------------------- painting
    def resizeEvent(self, event) -> None:
        self._ink = None
        super().resizeEvent(event)

    def paintEvent(self, event) -> None:
        if self._ink is None or self._ink.size() != self.size():
            self._ink = self.render_image()
        painter = QPainter(self)
        painter.drawImage(0, 0, self._ink)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self._live:
            color = PAPER if self._live_eraser else INK
            view = self._live_view
            painter.translate(view.dx, view.dy)
            painter.scale(view.scale, view.scale)
            width = self._width_for(self._live_eraser) / view.scale
            _paint_points(painter, self._live, width, color)
        elif self.is_photo():
            painter.setPen(HINT)
            box = self.rect().adjusted(8, 8, -8, -8)
            bottom = Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter
            painter.drawText(box, bottom | Qt.TextFlag.TextWordWrap, PHOTO_HINT)
        elif self._state.is_empty:
            painter.setPen(HINT)
            painter.drawText(
                self.rect(),
                Qt.AlignmentFlag.AlignCenter,
                "Draw here: results appear as you draw.\n"
                "Or open a sketch (Ctrl+O) or paste an image (Ctrl+V).",
            )
        painter.end()

    def _paint_state(self, painter: QPainter, state: SketchState) -> None:
        """Paint ``state`` in drawing coordinates (the painter maps them)."""
        if state.background is not None and state.frame is not None:
            bg, frame = state.background, state.frame
            fit = bg.size().toSizeF().scaled(frame.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x = frame.x() + (frame.width() - fit.width()) / 2
            y = frame.y() + (frame.height() - fit.height()) / 2
            painter.drawImage(QRectF(x, y, fit.width(), fit.height()), bg)
        for drawn in state.strokes:
            color = PAPER if drawn.stroke.eraser else INK
            _paint_points(painter, drawn.stroke.points, drawn.width, color)


def _paint_points(painter: QPainter, points, width: float, color: QColor) -> None:
    pen = QPen(
        color, width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin
    )
    if len(points) == 1:
        pen.setWidthF(stroke_width(width, points[0].pressure))
        painter.setPen(pen)
        painter.drawPoint(QPointF(points[0].x, points[0].y))
        return
    for a, b in itertools.pairwise(points):
        pen.setWidthF(stroke_width(width, (a.pressure + b.pressure) / 2))
        painter.setPen(pen)
        painter.drawLine(QPointF(a.x, a.y), QPointF(b.x, b.y))


def _is_real_mouse(event: QMouseEvent) -> bool:
    """False for mouse events Qt synthesised from a tablet or touch (those are handled already)."""
    device = event.pointingDevice()
    return device is None or device.type() == QInputDevice.DeviceType.Mouse
