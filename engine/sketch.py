"""The one canonical sketch input that training and search both use.

Every sketch, whether strokes from the canvas, a QuickDraw or ChairV2 drawing, or a sketch image
file, becomes the same thing: a uint8 (SKETCH_SIZE, SKETCH_SIZE) array, white paper = 255, dark ink.
``rasterize`` (strokes) and ``normalize_sketch`` (images) share one core, ``_canonical``, so the
search path sees exactly what training saw.

Choices:
- Ink is separated from paper by a threshold a third of the way from the paper level (the median
  grey) to the darkest pixel; a white-on-black image (median grey < 128) is inverted first; an image
  with less than 32 grey levels between paper and ink is blank and raises ``SketchError``.
- Geometry: the drawing's long side spans the inner ``1 - 2 * MARGIN_FRACTION`` of the square (a
  margin of 8 % each side), the short side is centred. The span is measured on the stroke centre
  lines, so a thick-penned and a thin-penned drawing land at the same place and scale.
- Line width: the ink mask (area-averaged when downscaling, with a threshold scaled by the
  reduction so a one-pixel line survives a 20x reduction) is skeletonised (skimage, Zhang) and
  redrawn as an anti-aliased line (coverage = clip(r + 0.5 - distance to the skeleton)) of
  ``STROKE_WIDTH_FRACTION`` of the size (3 px at 256), whatever the original pen width or
  drawing size. About 3 ms at 256 px.
- Strokes are drawn on a working canvas whose long side is twice the output size, with a thin pen;
  eraser strokes paint paper over earlier ink in drawing order, as wide as the stroke says (the
  canvas records its eraser's width), else ``ERASER_WIDTH_FRACTION`` of the ink's long side.
  Pressure and time are kept in the data model but do not change the raster: no training set
  records pressure, and the canonical form must not depend on the input device.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError
from skimage.morphology import skeletonize

from engine.errors import SketchError

log = logging.getLogger(__name__)

SKETCH_SIZE = 256
SKETCH_FORMAT_VERSION = 1
"""Version of the canonical raster form (checkpoints record it): bump on any change to it."""

MARGIN_FRACTION = 0.08
STROKE_WIDTH_FRACTION = 3.0 / 256.0
ERASER_WIDTH_FRACTION = 0.04
STROKES_FORMAT = "sketch-search-strokes"
STROKES_VERSION = 1
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

_MIN_CONTRAST = 32
_BLANK_MESSAGE = "The sketch is empty: draw something first."


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
        if self.width is not None and not (math.isfinite(self.width) and self.width > 0):
            raise SketchError(f"A stroke width must be a positive number, not {self.width!r}.")


@dataclass(frozen=True)
class QuickDrawDrawing:
    word: str
    key_id: str
    countrycode: str
    recognized: bool
    strokes: tuple[Stroke, ...]


# ----------------------------------------------------------------------------- canonical core
def _canonical(ink: Image.Image, size: int) -> np.ndarray:
    """Ink mask ('L', 255 = ink) of any size to the canonical sketch (see the module docstring)."""
    bbox = ink.getbbox()
    if bbox is None:
        raise SketchError(_BLANK_MESSAGE)
    inner = size * (1.0 - 2.0 * MARGIN_FRACTION)
    box = tuple(float(v) for v in bbox)
    skel, origin, scale = _skeleton(ink, box, inner, size)
    ys, xs = np.nonzero(skel)
    if len(xs):
        # Refit so that the stroke centre lines, not the ink's outer edges, span the inner box.
        lo_x, hi_x = origin[0] + (xs.min() + 0.5) / scale, origin[0] + (xs.max() + 0.5) / scale
        lo_y, hi_y = origin[1] + (ys.min() + 0.5) / scale, origin[1] + (ys.max() + 0.5) / scale
        span = max(hi_x - lo_x, hi_y - lo_y)
        if span > 0 and abs(span * scale - inner) > 1.0:
            skel, _, _ = _skeleton(ink, (lo_x, lo_y, hi_x, hi_y), inner, size)
    if not skel.any():
        raise SketchError(_BLANK_MESSAGE)
    return _draw_lines(skel, 0.5 * STROKE_WIDTH_FRACTION * size)


def _draw_lines(skel: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased lines of ``radius`` around the skeleton: coverage clip(r + 0.5 - distance).

    A max over the few shifted copies of the skeleton inside the pen's footprint: the same result
    as a Euclidean distance transform, several times faster at these radii.
    """
    reach = math.ceil(radius + 0.5)
    h, w = skel.shape
    padded = np.pad(skel.astype(np.float32), reach)
    coverage = np.zeros((h, w), np.float32)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            weight = min(1.0, radius + 0.5 - math.hypot(dx, dy))
            if weight > 0:
                shifted = padded[reach + dy : reach + dy + h, reach + dx : reach + dx + w]
                np.maximum(coverage, shifted * weight, out=coverage)
    return np.round(255.0 * (1.0 - coverage)).astype(np.uint8)


def _skeleton(
    ink: Image.Image, box: tuple[float, ...], inner: float, size: int
) -> tuple[np.ndarray, tuple[float, float], float]:
    """Map ``box`` (source units) onto the centred inner square, binarise and skeletonise.

    Returns the skeleton, the source point at the canvas origin, and the scale (canvas/source).
    """
    x0, y0, x1, y1 = box
    scale = inner / max(x1 - x0, y1 - y0, 1e-3)
    # The source region that lands on the whole canvas (margins included); crop pads with 0.
    sx0 = x0 - (size - (x1 - x0) * scale) / 2.0 / scale
    sy0 = y0 - (size - (y1 - y0) * scale) / 2.0 / scale
    side = size / scale
    ix0, iy0 = math.floor(sx0), math.floor(sy0)
    region = ink.crop((ix0, iy0, math.ceil(sx0 + side), math.ceil(sy0 + side)))
    rel = (sx0 - ix0, sy0 - iy0, sx0 - ix0 + side, sy0 - iy0 + side)
    shrink = 1.0 / scale
    resample = Image.Resampling.BOX if shrink > 1.0 else Image.Resampling.BILINEAR
    canvas = np.asarray(region.resize((size, size), resample, box=rel))
    # A line one source pixel wide keeps about 1/shrink of its ink after area averaging.
    threshold = 255.0 * max(0.5 / max(shrink, 1.0), 0.02)
    return skeletonize(canvas >= threshold), (sx0, sy0), scale


# ----------------------------------------------------------------------------- images
def normalize_sketch(image: Image.Image | np.ndarray, size: int = SKETCH_SIZE) -> np.ndarray:
    """Any sketch image to the canonical uint8 (size, size) form (dark ink on white)."""
    grey = _grey(image)
    if np.median(grey) < 128:  # white strokes on a dark ground
        grey = 255 - grey
    paper, darkest = float(np.median(grey)), float(grey.min())
    if paper - darkest < _MIN_CONTRAST:
        raise SketchError(_BLANK_MESSAGE)
    threshold = paper - (paper - darkest) / 3.0
    ink = Image.fromarray(np.where(grey < threshold, 255, 0).astype(np.uint8), "L")
    return _canonical(ink, size)


def _grey(image: Image.Image | np.ndarray) -> np.ndarray:
    """uint8 grey array; transparency is composited on white. Float arrays are in [0, 1]."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype == bool or np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.nan_to_num(arr.astype(np.float32)) * 255.0 + 0.5, 0, 255)
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise SketchError(f"A sketch must be a 2-D grey or RGB(A) image, not {arr.shape}.")
        arr = arr.astype(np.uint8)
        image = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    if not isinstance(image, Image.Image):
        raise SketchError(f"Cannot read a sketch from a {type(image).__name__}.")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float32)
        top = float(arr.max()) or 1.0
        return (arr * (255.0 / top)).astype(np.uint8) if top > 255 else arr.astype(np.uint8)
    return np.asarray(image.convert("L"))


# ----------------------------------------------------------------------------- strokes
def rasterize(
    strokes: Iterable[Stroke], size: int = SKETCH_SIZE, eraser_width: float | None = None
) -> np.ndarray:
    """Strokes (drawing units, y down) to the canonical uint8 (size, size) sketch.

    An eraser stroke's width is its own ``width`` when it has one, else ``eraser_width`` (drawing
    units), else ERASER_WIDTH_FRACTION of the ink's long side.
    """
    strokes = list(strokes)
    ink_points = [(p.x, p.y) for s in strokes if not s.eraser for p in s.points]
    if not ink_points:
        raise SketchError(_BLANK_MESSAGE)
    xy = np.asarray(ink_points, dtype=np.float64)
    if not np.isfinite(xy).all():
        raise SketchError("A stroke has a coordinate that is not a finite number.")
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float((hi - lo).max())
    work = 2 * size
    scale = work / span if span > 0 else 1.0
    pen = max(2, round(work * 0.006))
    erase = (eraser_width if eraser_width is not None else ERASER_WIDTH_FRACTION * span) * scale
    pad = pen + 2
    extent = np.ceil((hi - lo) * scale).astype(int) + 2 * pad + 1
    ink = Image.new("L", (int(extent[0]), int(extent[1])), 0)
    draw = ImageDraw.Draw(ink)
    for stroke in strokes:
        if not stroke.points:
            continue
        pts = [((p.x - lo[0]) * scale + pad, (p.y - lo[1]) * scale + pad) for p in stroke.points]
        if stroke.eraser:
            own = stroke.width * scale if stroke.width is not None else erase
            width, fill = max(1, round(own)), 0
        else:
            width, fill = pen, 255
        if len(pts) > 1:
            draw.line(pts, fill=fill, width=width, joint="curve")
        r = width / 2.0
        for x, y in (pts[0], pts[-1]):  # round caps (PIL lines have square ends)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    return _canonical(ink, size)


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
    """Our format, a QuickDraw ndjson object (``drawing``) or a bare QuickDraw drawing list."""
    try:
        if isinstance(obj, list):
            return _quickdraw_strokes(obj)
        if not isinstance(obj, dict):
            raise ValueError("expected a JSON object or list")
        if "drawing" in obj and "format" not in obj:
            return _quickdraw_strokes(obj["drawing"])
        if obj.get("format") != STROKES_FORMAT:
            raise ValueError(f"'format' is not '{STROKES_FORMAT}'")
        version = obj.get("version")
        if not isinstance(version, int) or version > STROKES_VERSION:
            raise ValueError(f"version {version!r} is newer than this app reads; update the app")
        return [
            Stroke(
                tuple(_point(p) for p in s["points"]),
                bool(s.get("eraser", False)),
                None if s.get("width") is None else float(s["width"]),
            )
            for s in obj["strokes"]
        ]
    except SketchError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SketchError(f"Not a readable stroke drawing: {exc}.") from exc


def _point(values: Sequence[Any]) -> Point:
    if not 2 <= len(values) <= 4:
        raise ValueError("a point is [x, y] or [x, y, pressure] or [x, y, pressure, t]")
    return Point(*(float(v) for v in values))


def _quickdraw_strokes(drawing: Sequence[Any]) -> list[Stroke]:
    """QuickDraw ``drawing`` form: one [xs, ys] or [xs, ys, ts] per stroke."""
    strokes = []
    for stroke in drawing:
        xs, ys = stroke[0], stroke[1]
        ts = stroke[2] if len(stroke) > 2 else [0.0] * len(xs)
        if not len(xs) == len(ys) == len(ts):
            raise ValueError("a stroke's xs, ys and ts differ in length")
        strokes.append(
            Stroke(
                tuple(
                    Point(float(x), float(y), 1.0, float(t))
                    for x, y, t in zip(xs, ys, ts, strict=True)
                )
            )
        )
    return strokes


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
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        reason = exc.strerror or exc
        raise SketchError(f"Cannot read the sketch file {path.name}: {reason}.") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SketchError(f"The sketch file {path.name} is not valid JSON: {exc}.") from exc
    try:
        return strokes_from_json(obj)
    except SketchError as exc:
        raise SketchError(f"{path.name}: {exc}") from exc


def load_sketch(path: str | os.PathLike, size: int = SKETCH_SIZE) -> np.ndarray:
    """A sketch image (png, jpg, ...) or strokes JSON file to the canonical array."""
    path = Path(path)
    if path.suffix.lower() in (".json", ".ndjson"):
        return _named(path, lambda: rasterize(load_strokes(path), size))
    try:
        with Image.open(path) as img:
            img.seek(0)
            img.load()
            return _named(path, lambda: normalize_sketch(img, size))
    except FileNotFoundError as exc:
        raise SketchError(f"The sketch file {path} does not exist.") from exc
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SketchError(
            f"Cannot read {path.name} as a sketch image ({exc}); use a PNG/JPEG or strokes JSON."
        ) from exc


def _named(path: Path, make):
    try:
        return make()
    except SketchError as exc:
        if path.name in str(exc):
            raise
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
                        yield number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise SketchError(f"{path.name} line {number}: not JSON ({exc}).") from exc
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
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SketchError(f"{name} line {number}: not a QuickDraw drawing ({exc}).") from exc


def read_chairv2(path: str | os.PathLike) -> Iterator[tuple[str, list[Stroke]]]:
    """(key, strokes) of the ChairV2 ``strokes.jsonl(.gz)``: [x, y, pen], pen = 1 ends a stroke."""
    name = Path(path).name
    for number, obj in _json_lines(path):
        try:
            strokes, current = [], []
            for x, y, pen in obj["points"]:
                current.append(Point(float(x), float(y)))
                if pen >= 0.5:
                    strokes.append(Stroke(tuple(current)))
                    current = []
            if current:
                strokes.append(Stroke(tuple(current)))
            yield str(obj["key"]), strokes
        except (KeyError, TypeError, ValueError) as exc:
            raise SketchError(f"{name} line {number}: not a ChairV2 sketch ({exc}).") from exc
