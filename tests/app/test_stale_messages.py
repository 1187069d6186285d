"""An error belongs to the state that caused it and goes when that state goes (before, "The
sketch is empty" stayed through undo, clear and open, a model's error stayed above another
model's results, and erasing all ink showed an error beside the old results)."""

from __future__ import annotations

from PIL import Image

from engine.models import save_checkpoint
from engine.paths import models_dir
from engine.sketch import Point, Stroke, read_quickdraw, save_strokes
from engine.store import create_fresh
from tests.app.conftest import shared_or_skip
from tests.app.test_canvas import draw_line
from tests.app.test_search_as_you_draw import replay


def _blank_png(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(path)
    return path


def test_an_error_of_the_sketch_goes_with_undo_clear_open_and_drawing(qtbot, make_window, tmp_path):
    window = make_window(auto_index=False)
    window.show()
    qtbot.waitExposed(window)
    bar = window.message_bar
    blank = _blank_png(tmp_path)

    window.open_sketch(blank)
    assert bar.isVisible() and "The sketch is empty" in bar.text()
    draw_line(window.canvas, (40, 60), (200, 160))  # drawing: the sketch it was about is gone
    assert bar.isHidden()

    window.open_sketch(blank)
    assert bar.isVisible()
    window.undo_action.trigger()  # undo the stroke: the error goes too
    assert bar.isHidden() and window.canvas.is_empty()

    draw_line(window.canvas, (40, 60), (200, 160))
    window.open_sketch(blank)  # fails: the drawing stays, and the error with it
    assert bar.isVisible() and not window.canvas.is_empty()
    window.clear_action.trigger()  # clearing the drawing takes the error away
    assert bar.isHidden()

    strokes = save_strokes(tmp_path / "line.json", [Stroke((Point(0, 0), Point(50, 40)))])
    window.open_sketch(blank)
    assert bar.isVisible()
    window.open_sketch(strokes)  # opening another sketch
    assert bar.isHidden()


def test_a_models_error_goes_when_another_model_is_active(qtbot, make_window, model):
    other = save_checkpoint(
        create_fresh("baseline", bits=32, image_size=96), models_dir() / "small32.safetensors"
    )
    broken = models_dir() / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint at all")
    window = make_window(auto_index=False)
    bar = window.message_bar
    with qtbot.waitSignal(window.models.errorOccurred, timeout=30_000):
        window.models.switch(str(broken))
    assert not bar.isHidden() and "broken" in bar.text()
    assert window.models.active.model is model  # kept; the error stays while it is active
    with qtbot.waitSignal(window.models.modelChanged, timeout=60_000):
        window.models.switch(str(other))
    assert bar.isHidden(), bar.text()
    assert "small32" in window.model_label.text()


def test_erasing_all_ink_clears_the_results_without_an_error(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    drawing = next(read_quickdraw(shared_or_skip("quickdraw", "apple.ndjson.gz"), limit=1))
    library.add_root(photo_folder)
    window = make_window(auto_index=True)
    window.resize(1024, 700)
    window.show()
    qtbot.waitExposed(window)
    wait_for_index(window)
    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000):
        replay(window.canvas, drawing.strokes)
    assert window.results_model.rowCount() > 0

    canvas = window.canvas
    canvas.eraser = True
    canvas.pen_width = 40.0  # an eraser 160 px wide, swept over the whole canvas
    with qtbot.waitSignal(window.search.searchFailed, timeout=60_000):
        for y in range(0, canvas.height() + 80, 60):
            draw_line(canvas, (-80, y), (canvas.width() + 80, y), steps=6)
    assert not canvas.is_empty()  # strokes are there, but no ink is left
    assert window.results_model.rowCount() == 0  # no old results beside it
    assert window.message_bar.isHidden()  # and no error: it is an empty sketch
    assert "Everything drawn was erased" in window.results_view.empty_text
    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000):
        while canvas.undo_stack.index() > len(drawing.strokes):  # undo every eraser stroke
            canvas.undo_stack.undo()
    assert window.results_model.rowCount() > 0
