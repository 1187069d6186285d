"""The canvas: strokes with pressure and time, undo/redo/clear through the window's shortcuts,
tablet input accepted (not drawn twice), and a sketch saved and opened again."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QPointingDevice, QTabletEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from app.gui.search.canvas import ERASER_FACTOR, SketchCanvas
from engine.errors import EmptySketchError
from engine.sketch import rasterize
from tests.app.conftest import shared_or_skip


def draw_line(canvas, start: tuple[int, int], end: tuple[int, int], steps: int = 8) -> None:
    (x0, y0), (x1, y1) = start, end
    QTest.mousePress(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x0, y0)
    )
    for i in range(1, steps + 1):
        QTest.mouseMove(canvas, QPoint(x0 + (x1 - x0) * i // steps, y0 + (y1 - y0) * i // steps))
    QTest.mouseRelease(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x1, y1)
    )


def ink_columns(sketch: np.ndarray, columns: slice) -> int:
    """How many of ``columns`` have ink (dark pixels) anywhere."""
    return int((sketch[:, columns] < 128).any(axis=0).sum())


@pytest.fixture
def canvas(qtbot):
    widget = SketchCanvas()
    widget.resize(400, 400)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def test_mouse_strokes_record_points_and_eraser(canvas):
    draw_line(canvas, (50, 50), (300, 80))
    canvas.eraser = True
    draw_line(canvas, (100, 60), (120, 70), steps=3)
    strokes = canvas.strokes()
    assert [s.eraser for s in strokes] == [False, True]
    assert len(strokes[0].points) == 9
    assert (strokes[0].points[0].x, strokes[0].points[-1].x) == (50, 300)
    image = canvas.render_image()
    assert image.pixelColor(200, 66).lightness() < 128  # ink drawn where the line went
    assert image.pixelColor(110, 65).lightness() > 200  # and erased where the eraser went
    assert not canvas.is_empty()
    # the eraser stroke carries the width the canvas erased with, so search erases the same
    assert strokes[0].width is None
    assert strokes[1].width == canvas.pen_width * ERASER_FACTOR


def test_search_raster_erases_what_the_canvas_erased(canvas):
    canvas.pen_width = 2.0
    draw_line(canvas, (50, 200), (350, 200), steps=12)
    canvas.eraser = True
    draw_line(canvas, (150, 160), (250, 160), steps=6)  # 40 px above the line
    thin = rasterize(canvas.strokes())
    canvas.undo_stack.undo()
    canvas.pen_width = 25.0  # an eraser 100 px wide reaches the line
    draw_line(canvas, (150, 160), (250, 160), steps=6)
    wide = rasterize(canvas.strokes())
    middle = slice(110, 146)
    assert ink_columns(thin, middle) == 36
    assert ink_columns(wide, middle) == 0


def test_tablet_event_is_accepted_with_its_pressure(canvas):
    device = QPointingDevice.primaryPointingDevice()

    def send(kind: QEvent.Type, x: float, pressure: float) -> QTabletEvent:
        pos = QPointF(x, 100)
        event = QTabletEvent(
            kind,
            device,
            pos,
            canvas.mapToGlobal(pos),
            pressure,
            0,
            0,
            0,
            0,
            0,
            Qt.KeyboardModifier.NoModifier,
            Qt.MouseButton.LeftButton,
            Qt.MouseButton.LeftButton,
        )
        event.setAccepted(False)
        QApplication.sendEvent(canvas, event)
        return event

    events = [
        send(QEvent.Type.TabletPress, 10, 0.2),
        send(QEvent.Type.TabletMove, 60, 0.6),
        send(QEvent.Type.TabletMove, 120, 0.9),
        send(QEvent.Type.TabletRelease, 120, 0.0),
    ]
    assert all(e.isAccepted() for e in events)  # so Qt synthesises no mouse stroke as well
    (stroke,) = canvas.strokes()
    assert [round(p.pressure, 1) for p in stroke.points] == [0.2, 0.6, 0.9]


def test_undo_redo_clear_with_standard_shortcuts(qtbot, make_window):
    window = make_window(auto_index=False)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    canvas = window.canvas
    for y in (60, 120, 180):
        draw_line(canvas, (40, y), (240, y))
    assert len(canvas.strokes()) == 3

    control = Qt.KeyboardModifier.ControlModifier
    QTest.keyClick(canvas, Qt.Key.Key_Z, control)
    assert len(canvas.strokes()) == 2
    QTest.keyClick(canvas, Qt.Key.Key_Z, control)
    assert len(canvas.strokes()) == 1
    QTest.keyClick(canvas, Qt.Key.Key_Z, control | Qt.KeyboardModifier.ShiftModifier)
    assert len(canvas.strokes()) == 2
    QTest.keyClick(canvas, Qt.Key.Key_Y, control)
    assert len(canvas.strokes()) == 3
    QTest.keyClick(canvas, Qt.Key.Key_Backspace, control)  # clear
    assert canvas.strokes() == [] and canvas.is_empty()
    QTest.keyClick(canvas, Qt.Key.Key_Z, control)  # clearing is undoable too
    assert len(canvas.strokes()) == 3
    assert window.undo_action.isEnabled()


def test_save_and_reopen_sketch(canvas, tmp_path):
    from app.gui.search import sketch_io

    draw_line(canvas, (40, 40), (300, 300))
    draw_line(canvas, (300, 40), (40, 300))
    before = canvas.strokes()
    strokes_path = sketch_io.save_strokes_file(canvas, tmp_path / "cross")
    png_path = sketch_io.save_png(canvas, tmp_path / "cross")
    assert strokes_path.suffix == ".json" and png_path.suffix == ".png"
    assert not QImage(str(png_path)).isNull()

    canvas.clear()
    sketch_io.open_sketch(canvas, strokes_path)
    after = canvas.strokes()
    assert [len(s.points) for s in after] == [len(s.points) for s in before]
    assert [p.t for p in after[0].points] == [p.t for p in before[0].points]

    sketch_io.open_sketch(canvas, png_path)
    assert canvas.state().background is not None and canvas.strokes() == []
    query = canvas.query()
    assert isinstance(query, np.ndarray) and query.dtype == np.uint8 and query.min() < 128
    canvas.undo_stack.undo()
    assert len(canvas.strokes()) == 2


def test_open_real_sketch_image_and_bad_file(canvas, tmp_path):
    from app.gui.search import sketch_io
    from engine.errors import SketchSearchError

    sketch = sorted(shared_or_skip("sketchy", "sketches").glob("*/*.png"))[0]
    sketch_io.open_sketch(canvas, sketch)
    assert canvas.state().background is not None
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SketchSearchError, match=r"broken\.json"):
        sketch_io.open_sketch(canvas, broken)
    assert canvas.state().background is not None  # a failed open changes nothing


def test_touch_draws_one_stroke(canvas):
    device = QTest.createTouchDevice()
    QTest.touchEvent(canvas, device).press(0, QPoint(20, 20), canvas).commit()
    QTest.touchEvent(canvas, device).move(0, QPoint(80, 90), canvas).commit()
    QTest.touchEvent(canvas, device).release(0, QPoint(80, 90), canvas).commit()
    (stroke,) = canvas.strokes()
    assert (stroke.points[0].x, stroke.points[-1].y) == (20, 90)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal on Python 3.12+")
def test_drawing_hundreds_of_strokes_keeps_none_refcount(canvas):
    """PySide6 6.12.0 on Python 3.11 drops a reference to None on every call that returns
    nothing (QPainter.drawLine, QPen.setWidthF, ...): the app aborted with "Fatal Python error:
    none_dealloc" after a few sketches. Draw, erase and paint a few hundred strokes: None must
    not lose a single reference."""

    def draw_and_paint(index: int) -> None:
        canvas.eraser = index % 7 == 6
        y = 20 + (index * 13) % 360
        draw_line(canvas, (20 + index % 50, y), (380 - index % 40, 400 - y), steps=8)
        canvas.repaint()  # paints now: the ink image of every stroke so far, and the live stroke

    def settle() -> int:
        canvas.clear()
        canvas.repaint()  # the empty canvas's hint text
        canvas.undo_stack.clear()  # frees every state, and the strokes they hold
        gc.collect()
        return sys.getrefcount(None)

    for index in range(5):  # warm up: first-use caches hold their references from here on
        draw_and_paint(index)
    baseline = settle()
    for index in range(300):
        draw_and_paint(index)
        # new strokes and states hold None (widths, backgrounds), so the count only grows while
        # drawing; a leaky binding loses ~50 a stroke, and more as the sketch grows
        assert sys.getrefcount(None) >= baseline, f"None lost references at stroke {index}"
    assert len(canvas.strokes()) == 300

    # Every release checked (6.10.3 to 6.12.0) also keeps a few references to None for good: one
    # per QUndoStack.push, 5 or 6 per QPainter opened on a new QImage. An excess is harmless;
    # a loss is fatal.
    painted = sys.getrefcount(None)
    for _ in range(10):  # each renders all 300 strokes: ~8000 painter and pen calls
        canvas.render_image()
    assert 0 <= sys.getrefcount(None) - painted <= 10 * 10
    assert settle() >= baseline  # everything drawn is freed again


def _ink_box(image: QImage) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the dark pixels of a rendered canvas."""
    from app.gui.search.canvas import gray_array

    grey = gray_array(image)
    ys, xs = np.nonzero(grey < 128)
    return (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())) if len(xs) else None


def test_shrinking_the_canvas_keeps_the_drawing_whole_and_centred(qtbot, canvas):
    """Strokes are kept in drawing coordinates; the view scales and centres them with the
    canvas (before: strokes stayed in canvas pixels and a smaller window cut them off)."""
    canvas.resize(600, 500)
    qtbot.waitUntil(lambda: canvas.width() == 600)
    draw_line(canvas, (30, 440), (570, 460))  # near the bottom and both sides
    before = canvas.strokes()
    assert _ink_box(canvas.render_image())[2] > 560

    canvas.resize(300, 400)  # half as wide: the drawing is shown at half size, centred
    qtbot.waitUntil(lambda: canvas.width() == 300)
    assert canvas.strokes() == before  # the drawing itself does not change
    left, top, right, bottom = _ink_box(canvas.render_image())
    assert left >= 0 and right < 300 and bottom < 400
    assert abs(left - 15) <= 3 and abs(right - 285) <= 3  # 30 and 570 at scale 0.5
    assert abs(top - (75 + 220)) <= 3  # centred: (400 - 250) / 2 = 75 above the frame

    draw_line(canvas, (150, 100), (200, 100))  # drawn after the resize: lands where drawn
    points = canvas.strokes()[-1].points
    assert (points[0].x, points[0].y) == (300, 50)  # (150 - 0) / 0.5, (100 - 75) / 0.5
    rendered = canvas.render_image()
    assert rendered.pixelColor(175, 100).lightness() < 128

    canvas.resize(600, 500)  # back to the first size: everything where it was drawn
    qtbot.waitUntil(lambda: canvas.width() == 600)
    rendered = canvas.render_image()
    assert rendered.pixelColor(300, 450).lightness() < 128
    assert rendered.pixelColor(350, 50).lightness() < 128


def test_a_stroke_beyond_the_drawing_widens_its_frame(qtbot, canvas):
    canvas.resize(400, 400)
    qtbot.waitUntil(lambda: canvas.width() == 400)
    draw_line(canvas, (100, 200), (300, 200))
    canvas.resize(400, 300)  # the frame shows at scale 0.75, from x = 50
    qtbot.waitUntil(lambda: canvas.height() == 300)
    draw_line(canvas, (5, 100), (60, 100))  # left of the frame: x < 0 in drawing units
    assert canvas.strokes()[-1].points[0].x < 0
    canvas.resize(400, 400)
    qtbot.waitUntil(lambda: canvas.height() == 400)
    left, _top, right, _bottom = _ink_box(canvas.render_image())
    assert left >= 0 and right < 400  # both strokes whole


def test_erasing_beyond_the_drawing_does_not_shrink_it(qtbot, canvas):
    """Sweeping a wide eraser past the edges erases; it does not widen the frame (before this
    was caught, each sweep shrank the view and sent the next one further out)."""
    draw_line(canvas, (100, 200), (300, 200))
    canvas.eraser = True
    canvas.pen_width = 40.0
    for y in range(0, 480, 60):
        draw_line(canvas, (-80, y), (480, y), steps=6)
    assert canvas.view().scale == 1.0
    assert all(
        -100 <= p.x <= 500 and -100 <= p.y <= 500 for s in canvas.strokes() for p in s.points
    )
    with pytest.raises(EmptySketchError):
        rasterize(canvas.strokes())
