"""Opening a crafted strokes file in the app shows the message the command line prints, and
changes nothing on the canvas; a valid file with an absurdly wide eraser opens at once."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from app.cli import EXIT_ERROR, main
from app.gui.search import sketch_io
from app.gui.search.canvas import gray_array
from engine.errors import SketchError
from tests.app.test_canvas import draw_line
from tests.engine.test_strokes import CRAFTED


def test_a_crafted_strokes_file_shows_the_command_lines_message(
    qtbot, make_window, tmp_path, capsys
):
    window = make_window(auto_index=False)
    window.show()
    qtbot.waitExposed(window)
    draw_line(window.canvas, (40, 60), (200, 160))
    before = window.canvas.state()
    for name, (text, reason) in CRAFTED.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        window.message_bar.dismiss()
        window.open_sketch(path)
        shown = window.message_bar.text()
        assert window.message_bar.isVisible() and window.message_bar.kind == "error"
        assert re.search(reason, shown), shown
        assert main(["query", str(path), "--library", str(tmp_path / "lib")]) == EXIT_ERROR
        assert capsys.readouterr().err == f"error: {shown}\n"
        assert window.canvas.state() == before  # a failed open changes nothing
        with pytest.raises(SketchError):
            sketch_io.open_sketch(window.canvas, path)


def test_a_huge_eraser_opens_and_erases_at_once(qtbot, tmp_path):
    from app.gui.search.canvas import SketchCanvas

    canvas = SketchCanvas()
    canvas.resize(400, 400)
    qtbot.addWidget(canvas)
    canvas.show()
    qtbot.waitExposed(canvas)
    path = tmp_path / "eraser.json"
    drawing = {
        "format": "sketch-search-strokes",
        "version": 1,
        "strokes": [
            {"points": [[0, 0], [100, 100]]},
            {"points": [[0, 0], [50, 50]], "eraser": True, "width": 1e12},
        ],
    }
    path.write_text(json.dumps(drawing))
    start = time.process_time()
    sketch_io.open_sketch(canvas, path)
    canvas.repaint()
    image = gray_array(canvas.render_image())
    assert time.process_time() - start < 2.0
    assert len(canvas.strokes()) == 2 and canvas.strokes()[1].width < 1e12  # at most 6e6 units
    assert np.all(image == 255)  # erased on screen as the search erases it
