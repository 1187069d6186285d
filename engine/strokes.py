"""Strokes: the data model of a drawing, its JSON files, and the readers of stroke data sets.

A strokes file is read by anyone who is sent one, so everything in it is checked at this boundary
before anything else sees it (``load_strokes``, ``strokes_from_json``), and ``check_strokes`` checks
``Stroke`` objects however they were made (``engine.sketch.rasterize`` calls it). Limits:

- a file is at most ``MAX_FILE_BYTES``; a drawing at most ``MAX_STROKES`` strokes and
  ``MAX_POINTS`` points (a canvas records about a hundred points a second of drawing);
- coordinates are finite numbers within +-``MAX_COORDINATE`` drawing units, times within
  +-``MAX_TIME_MS``; pressure is a finite number, clamped to [0, 1] as the canvas does;
- an eraser width is a finite positive number; one above ``MAX_ERASER_WIDTH`` (wider than the
  whole coordinate range: it erases everything from anywhere) is read as that wide;
- JSON: an integer of more than ``MAX_INT_DIGITS`` digits, ``NaN``/``Infinity``, and nesting
  deeper than Python's parser can follow are refused with a message, never a traceback.
Every failure raises ``SketchError`` saying what is wrong and where (stroke and point, 1-based).
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import SketchError

STROKES_FORMAT = "sketch-search-strokes"
STROKES_VERSION = 1

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_STROKES = 10_000
MAX_POINTS = 100_000
MAX_COORDINATE = 1_000_000.0
MAX_TIME_MS = 1e15
MAX_ERASER_WIDTH = 6_000_000.0  # > 2 * sqrt(2) * MAX_COORDINATE: covers the whole range
MAX_INT_DIGITS = 20

_COORDINATE_RULE = f"coordinates must be finite numbers within ±{MAX_COORDINATE:,.0f}"


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    pressure: float = 1.0
    t: float = 0.0
    """Milliseconds since the drawing began."""


@dataclass(frozen=True)
class Stroke:
    points: tuple[Point, ...]
    eraser: bool = False
    width: float | None = None
    """Eraser width in drawing units, as the person erased; None: the default. Ink strokes
    ignore it (the canonical line width does not depend on the pen)."""

    def __post_init__(self) -> None:
        if self.width is None:
            return
        try:
            ok = math.isfinite(self.width) and self.width > 0
        except (TypeError, OverflowError):
            ok = False
        if not ok:
            raise SketchError(
                f"A stroke width must be a positive number, not {_short(self.width)}."
            )


@dataclass(frozen=True)
class QuickDrawDrawing:
    word: str
    key_id: str
    countrycode: str
    recognized: bool
    strokes: tuple[Stroke, ...]


# ----------------------------------------------------------------------------- checks
def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def _number(value: Any, what: str, limit: float) -> float:
    """``value`` as a float when it is a JSON number within +-``limit``, else ValueError."""
    if type(value) not in (int, float):
        raise ValueError(f"{what} is {_short(value)}, not a number")
    # an int is compared before float(), which it may overflow; NaN fails every comparison
    if not -limit <= value <= limit or not -limit <= float(value) <= limit:
        rule = f" within ±{limit:,.0f}" if math.isfinite(limit) else ""
        raise ValueError(f"{what} is {_short(value)}, not a finite number{rule}")
    return float(value)


def check_strokes(strokes: Iterable[Stroke]) -> tuple[list[Stroke], np.ndarray]:
    """Strokes however made, checked: returns them as a list and their points' (n, 2) x, y.

    Raises SketchError for too many strokes or points, a point that is not two numbers, or a
    coordinate that is not finite or lies outside +-MAX_COORDINATE.
    """
    try:
        strokes = list(strokes)
        counts = [len(s.points) for s in strokes]
    except (TypeError, AttributeError) as exc:
        raise SketchError(f"Not a list of strokes with points ({exc}).") from exc
    if len(strokes) > MAX_STROKES:
        raise _too_many(f"{len(strokes):,} strokes")
    if sum(counts) > MAX_POINTS:
        raise _too_many(f"{sum(counts):,} points")
    try:
        xy = np.array([(p.x, p.y) for s in strokes for p in s.points], np.float64)
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise SketchError(f"A stroke point is not a pair of numbers ({exc}).") from exc
    xy = xy.reshape(-1, 2)
    bad = ~(np.abs(xy) <= MAX_COORDINATE).all(axis=1)  # NaN compares False: bad too
    if bad.any():
        first = int(np.argmax(bad))
        ends = np.cumsum(counts)
        stroke = int(np.searchsorted(ends, first, side="right"))
        point = first - (int(ends[stroke - 1]) if stroke else 0)
        x, y = xy[first]
        raise SketchError(
            f"Stroke {stroke + 1}, point {point + 1} lies at ({x:g}, {y:g}): {_COORDINATE_RULE}."
        )
    return strokes, xy


def _too_many(found: str) -> SketchError:
    return SketchError(
        f"The drawing has {found}; a sketch has at most {MAX_STROKES:,} strokes and "
        f"{MAX_POINTS:,} points. Simplify it, or save it as an image."
    )


def _add_points(total: int, count: int) -> int:
    total += count
    if total > MAX_POINTS:
        raise _too_many(f"more than {MAX_POINTS:,} points")
    return total


# ----------------------------------------------------------------------------- JSON
def _parse_json(text: str) -> Any:
    """json.loads that refuses what a stroke drawing never holds, with SketchError."""

    def parse_int(digits: str) -> int:
        count = len(digits.lstrip("-"))
        if count > MAX_INT_DIGITS:
            raise SketchError(f"A number has {count:,} digits; {_COORDINATE_RULE}.")
        return int(digits)

    def parse_constant(name: str) -> float:
        raise SketchError(f"It holds {name}; {_COORDINATE_RULE}.")

    try:
        return json.loads(text, parse_int=parse_int, parse_constant=parse_constant)
    except RecursionError as exc:
        raise SketchError(
            "Its JSON is nested too deeply for a stroke drawing (a list of strokes, each a "
            "list of points)."
        ) from exc
    except json.JSONDecodeError as exc:
        raise SketchError(f"Not valid JSON ({exc}).") from exc


def strokes_to_json(strokes: Iterable[Stroke]) -> dict[str, Any]:
    """Strokes in our own JSON format (see ``strokes_from_json``)."""
    return {
        "format": STROKES_FORMAT,
        "version": STROKES_VERSION,
        "strokes": [
            {
                "eraser": s.eraser,
                "points": [[p.x, p.y, p.pressure, p.t] for p in s.points],
                **({"width": s.width} if s.width is not None else {}),
            }
            for s in strokes
        ],
    }


def strokes_from_json(obj: Any) -> list[Stroke]:
    """Our format, a QuickDraw ndjson object (``drawing``) or a bare QuickDraw drawing list.

    Every value is checked (see the module docstring); SketchError says what is wrong where.
    """
    try:
        if isinstance(obj, list):
            strokes = _quickdraw_strokes(obj)
        elif not isinstance(obj, dict):
            raise ValueError("expected a JSON object or list")
        elif "drawing" in obj and "format" not in obj:
            strokes = _quickdraw_strokes(obj["drawing"])
        else:
            strokes = _our_strokes(obj)
    except SketchError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SketchError(f"Not a readable stroke drawing: {exc}.") from exc
    return strokes


def _our_strokes(obj: dict[str, Any]) -> list[Stroke]:
    if obj.get("format") != STROKES_FORMAT:
        raise ValueError(f"'format' is not '{STROKES_FORMAT}'")
    version = obj.get("version")
    if type(version) is not int or version > STROKES_VERSION:
        raise ValueError(f"version {_short(version)} is newer than this app reads; update the app")
    items = _sized_list(obj["strokes"], "'strokes'", MAX_STROKES, "strokes")
    strokes, total = [], 0
    for number, item in enumerate(items, 1):
        where = f"stroke {number}"
        if not isinstance(item, dict):
            raise ValueError(f"{where} is not an object with 'points'")
        points = _sized_list(item["points"], f"{where}'s 'points'", MAX_POINTS, "points")
        total = _add_points(total, len(points))
        width = item.get("width")
        if width is not None:
            width = _number(width, f"{where}'s width", math.inf)
            if width <= 0:
                raise ValueError(f"{where}'s width is {width:g}; a width must be positive")
            width = min(width, MAX_ERASER_WIDTH)
        eraser = item.get("eraser", False)
        if not isinstance(eraser, bool):
            raise ValueError(f"{where}'s 'eraser' is {_short(eraser)}, not true or false")
        checked = tuple(_point(p, f"{where}, point {i}") for i, p in enumerate(points, 1))
        strokes.append(Stroke(checked, eraser, width))
    return strokes


def _sized_list(value: Any, what: str, limit: int, unit: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    if len(value) > limit:
        raise _too_many(f"{len(value):,} {unit}")
    return value


def _point(values: Any, where: str) -> Point:
    if not isinstance(values, list) or not 2 <= len(values) <= 4:
        raise ValueError(f"{where} is not [x, y], [x, y, pressure] or [x, y, pressure, t]")
    x = _number(values[0], f"{where}: x", MAX_COORDINATE)
    y = _number(values[1], f"{where}: y", MAX_COORDINATE)
    pressure = _number(values[2], f"{where}: pressure", math.inf) if len(values) > 2 else 1.0
    t = _number(values[3], f"{where}: t", MAX_TIME_MS) if len(values) > 3 else 0.0
    return Point(x, y, min(max(pressure, 0.0), 1.0), t)


def _quickdraw_strokes(drawing: Any) -> list[Stroke]:
    """QuickDraw ``drawing`` form: one [xs, ys] or [xs, ys, ts] per stroke."""
    drawing = _sized_list(drawing, "the drawing", MAX_STROKES, "strokes")
    strokes, total = [], 0
    for number, stroke in enumerate(drawing, 1):
        where = f"stroke {number}"
        if not isinstance(stroke, list) or len(stroke) not in (2, 3):
            raise ValueError(f"{where} is not [xs, ys] or [xs, ys, ts]")
        xs = _sized_list(stroke[0], f"{where}'s xs", MAX_POINTS, "points")
        ys = _sized_list(stroke[1], f"{where}'s ys", MAX_POINTS, "points")
        ts = (
            _sized_list(stroke[2], f"{where}'s ts", MAX_POINTS, "points")
            if len(stroke) > 2
            else None
        )
        if len(ys) != len(xs) or (ts is not None and len(ts) != len(xs)):
            raise ValueError(f"{where}'s xs, ys and ts differ in length")
        total = _add_points(total, len(xs))
        points = []
        for i in range(len(xs)):
            at = f"{where}, point {i + 1}"
            x = _number(xs[i], f"{at}: x", MAX_COORDINATE)
            y = _number(ys[i], f"{at}: y", MAX_COORDINATE)
            t = _number(ts[i], f"{at}: t", MAX_TIME_MS) if ts is not None else 0.0
            points.append(Point(x, y, 1.0, t))
        strokes.append(Stroke(tuple(points)))
    return strokes


# ----------------------------------------------------------------------------- files
def save_strokes(path: str | os.PathLike, strokes: Iterable[Stroke]) -> Path:
    """Write strokes as our JSON format; returns the path."""
    path = Path(path)
    try:
        path.write_text(json.dumps(strokes_to_json(strokes)), encoding="utf-8")
    except OSError as exc:
        raise SketchError(f"Cannot save the sketch to {path}: {exc.strerror or exc}.") from exc
    return path


def load_strokes(path: str | os.PathLike) -> list[Stroke]:
    """Read a strokes JSON file (our format, or one QuickDraw object or drawing list)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or exc
        raise SketchError(f"Cannot read the sketch file {path.name}: {reason}.") from exc
    if len(data) > MAX_FILE_BYTES:
        raise SketchError(
            f"{path.name} is larger than {MAX_FILE_BYTES // 2**20} MB, more than a stroke "
            "drawing can be; simplify the drawing, or save it as an image."
        )
    try:
        return strokes_from_json(_parse_json(data.decode("utf-8")))
    except UnicodeDecodeError as exc:
        raise SketchError(f"{path.name}: Not a text file ({exc}).") from exc
    except SketchError as exc:
        raise SketchError(f"{path.name}: {exc}") from exc


# ----------------------------------------------------------------------------- data set readers
def _json_lines(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield number, _parse_json(line)
                    except SketchError as exc:
                        raise SketchError(f"{path.name} line {number}: {exc}") from exc
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise SketchError(f"Cannot read {path.name}: {exc}.") from exc


def read_quickdraw(path: str | os.PathLike, limit: int | None = None) -> Iterator[QuickDrawDrawing]:
    """Drawings of a QuickDraw raw ``<word>.ndjson(.gz)`` file, in file order."""
    name = Path(path).name
    for count, (number, obj) in enumerate(_json_lines(path)):
        if limit is not None and count >= limit:
            return
        try:
            yield QuickDrawDrawing(
                word=str(obj["word"]),
                key_id=str(obj["key_id"]),
                countrycode=str(obj.get("countrycode", "")),
                recognized=bool(obj.get("recognized", False)),
                strokes=tuple(_quickdraw_strokes(obj["drawing"])),
            )
        except (KeyError, TypeError, ValueError, IndexError, SketchError) as exc:
            raise SketchError(f"{name} line {number}: not a QuickDraw drawing ({exc}).") from exc
