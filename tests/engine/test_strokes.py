"""Crafted strokes files and stroke objects end in one SketchError that says what is wrong, in
bounded time, never in a traceback from json, float() or Pillow (issue 15, item 3)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from engine.errors import SketchError
from engine.sketch import load_sketch, rasterize
from engine.strokes import (
    MAX_FILE_BYTES,
    MAX_POINTS,
    STROKES_FORMAT,
    Point,
    Stroke,
    check_strokes,
    load_strokes,
    strokes_from_json,
)

HEAD = '{"format": "sketch-search-strokes", "version": 1, "strokes": [{"points": '


def ours(*strokes: dict) -> dict:
    return {"format": STROKES_FORMAT, "version": 1, "strokes": list(strokes)}


def line(x0, y0, x1, y1, n=12) -> list[list[float]]:
    return [[x0 + (x1 - x0) * i / (n - 1), y0 + (y1 - y0) * i / (n - 1)] for i in range(n)]


# Each was a traceback from `sketch-search query` (OverflowError, ValueError, RecursionError,
# Pillow's ValueError) before the strokes were checked at the boundary.
CRAFTED = {
    "int400": (HEAD + "[[1" + "0" * 400 + ", 2], [3, 4]]}]}", r"401 digits"),
    "int5000": (HEAD + "[[1" + "0" * 5000 + ", 2], [3, 4]]}]}", r"5,001 digits"),
    "deep": ("[" * 100_000 + "]" * 100_000, r"nested too deeply"),
    "coord_1e308": (json.dumps(ours({"points": [[0, 0], [1e308, 1e308]]})), r"x is 1e\+308"),
    "coord_pm_1e308": (json.dumps(ours({"points": [[-1e308, 0], [1e308, 5]]})), r"x is -1e\+308"),
    "float_overflow": (HEAD + "[[1e999, 2], [3, 4]]}]}", r"x is inf"),
    "nan": (HEAD + "[[NaN, 2], [3, 4]]}]}", r"holds NaN"),
    "infinity": (HEAD + "[[2, -Infinity], [3, 4]]}]}", r"holds -Infinity"),
    "quickdraw_1e308": (json.dumps([[[0, 1e308], [0, 5]]]), r"stroke 1, point 2: x is 1e\+308"),
    "string_coordinate": (HEAD + '[["1", 2], [3, 4]]}]}', r"x is '1', not a number"),
    "bool_eraser": (json.dumps(ours({"points": line(0, 0, 9, 9), "eraser": "yes"})), r"eraser"),
    "zero_width": (json.dumps(ours({"points": line(0, 0, 9, 9), "width": 0})), r"width is 0"),
    "strokes_not_list": (json.dumps(ours()).replace("[]", "{}"), r"'strokes' is not a list"),
}


@pytest.mark.parametrize("name", CRAFTED)
def test_a_crafted_strokes_file_is_one_clear_error(tmp_path, name):
    text, reason = CRAFTED[name]
    path = tmp_path / f"{name}.json"
    path.write_text(text)
    with pytest.raises(SketchError, match=reason) as caught:
        load_sketch(path)
    message = str(caught.value)
    assert message.startswith(f"{name}.json: ") and "\n" not in message and len(message) < 300


@pytest.mark.parametrize("width", [1e7, 1e12, 6e6])
def test_a_huge_eraser_erases_everything_at_once(tmp_path, width):
    """An eraser 1e7 wide took 40 s of CPU and one 1e12 wide overflowed Pillow: any eraser wider
    than the drawing erases all of it, at the cost of the drawing."""
    top = Stroke(tuple(Point(x, 0.0) for x in range(0, 101, 10)))
    side = Stroke(tuple(Point(100.0, y) for y in range(0, 101, 10)))
    start = time.process_time()
    sketch = [top, Stroke((Point(0, 0), Point(50, 0)), eraser=True, width=width), side]
    erased = rasterize(sketch)
    assert time.process_time() - start < 1.0
    wide_enough = rasterize([top, Stroke((Point(0, 0), Point(50, 0)), True, 300.0), side])
    np.testing.assert_array_equal(erased, wide_enough)  # the top line is gone, the side kept
    path = tmp_path / "eraser.json"
    path.write_text(
        json.dumps(
            ours(
                {"points": line(0, 0, 100, 0)},
                {"points": [[0, 0], [50, 0]], "eraser": True, "width": width},
            )
        )
    )
    start = time.process_time()
    with pytest.raises(SketchError, match=r"eraser\.json: The sketch is empty"):
        load_sketch(path)
    assert time.process_time() - start < 1.0


def test_an_eraser_far_off_the_drawing_is_clipped_exactly():
    """A line from -1e6 to 1e6 (billions of canvas pixels here) is clipped before Pillow draws it,
    and erases exactly what the same line clipped by hand erases."""
    cross = [
        Stroke(tuple(Point(x, 50.0) for x in range(0, 101, 5))),
        Stroke(tuple(Point(50.0, y) for y in range(0, 101, 5))),
    ]
    start = time.process_time()
    far = rasterize([*cross, Stroke((Point(-1e6, 20), Point(1e6, 20), Point(1e6, 80)), True, 8)])
    assert time.process_time() - start < 1.0
    near = rasterize([*cross, Stroke((Point(-30, 20), Point(130, 20)), True, 8)])
    np.testing.assert_array_equal(far, near)
    assert not np.array_equal(far, rasterize(cross))  # it did erase a piece of the upright


@pytest.mark.parametrize(
    ("strokes", "reason"),
    [
        ([Stroke((Point(float("nan"), 0), Point(1, 1)))], r"Stroke 1, point 1 lies at \(nan, 0\)"),
        ([Stroke((Point(0, 0),)), Stroke((Point(0, 0), Point(0, -2e6)))], r"Stroke 2, point 2"),
        ([Stroke((Point(10**400, 0), Point(1, 1)))], r"not a pair of numbers"),
        ([Stroke((Point("a", 0), Point(1, 1)))], r"not a pair of numbers"),
        ([Stroke(tuple(Point(i % 7, i % 5) for i in range(MAX_POINTS + 1)))], r"100,001 points"),
        ([Stroke(None)], r"Not a list of strokes with points"),
        ([(Point(0, 0), Point(1, 1))], r"Not a list of strokes with points"),
    ],
)
def test_rasterize_checks_stroke_objects_however_made(strokes, reason):
    with pytest.raises(SketchError, match=reason):
        rasterize(strokes)
    with pytest.raises(SketchError, match=r"positive number"):
        rasterize([Stroke((Point(0, 0), Point(5, 5)))], eraser_width=float("inf"))
    with pytest.raises(SketchError, match=r"width must be a positive number"):
        Stroke((Point(0, 0),), True, 10**400)


def test_size_limits_of_files_and_drawings(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps(ours({"points": line(0, 0, 9, 9)})) + " " * MAX_FILE_BYTES)
    with pytest.raises(SketchError, match=r"big\.json is larger than 16 MB"):
        load_strokes(big)
    many = [{"points": line(0, 0, 50, 50, n=1000)} for _ in range(MAX_POINTS // 1000 + 1)]
    with pytest.raises(SketchError, match=r"more than 100,000 points"):
        strokes_from_json(ours(*many))
    with pytest.raises(SketchError, match=r"20,001 strokes"):
        strokes_from_json([[[0], [0]]] * 20_001)


def test_values_in_range_are_read_as_written(tmp_path):
    """The checks refuse nothing a drawing holds: ints, floats, edge values, pressure clamped."""
    obj = ours(
        {"points": [[-1_000_000, 1_000_000, 0.5, 0], [3.25, 4, 1.5, 16.5]]},
        {"points": [[1, 2]], "eraser": True, "width": 1e9},
    )
    strokes = strokes_from_json(json.loads(json.dumps(obj)))
    assert strokes[0].points == (Point(-1e6, 1e6, 0.5, 0.0), Point(3.25, 4.0, 1.0, 16.5))
    assert strokes[1].width == 6e6  # wider than the whole coordinate range erases the same
    checked, xy = check_strokes(strokes)
    assert checked == strokes and xy.shape == (3, 2)
