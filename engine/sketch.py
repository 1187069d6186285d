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
- Strokes (``engine.strokes``: their data model, files and checks) are drawn on a working canvas
  whose long side is twice the output size, with a thin pen; eraser strokes paint paper over
  earlier ink in drawing order, as wide as the stroke says (the canvas records its eraser's
  width), else ``ERASER_WIDTH_FRACTION`` of the ink's long side, and at most twice the working
  canvas's diagonal (which erases all of it from anywhere on it). Pressure and time are kept in
  the data model but do not change the raster: no training set records pressure, and the
  canonical form must not depend on the input device.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError
from skimage.morphology import skeletonize

from engine.errors import EmptySketchError, SketchError
from engine.strokes import (
    STROKES_FORMAT,
    STROKES_VERSION,
    Point,
    QuickDrawDrawing,
    Stroke,
    check_strokes,
    load_strokes,
    read_quickdraw,
    save_strokes,
    strokes_from_json,
    strokes_to_json,
)

log = logging.getLogger(__name__)

__all__ = [  # the stroke data model and files live in engine.strokes; kept importable from here
    "ERASER_WIDTH_FRACTION",
    "IMAGE_SUFFIXES",
    "MARGIN_FRACTION",
    "SKETCH_FORMAT_VERSION",
    "SKETCH_SIZE",
    "STROKES_FORMAT",
    "STROKES_VERSION",
    "STROKE_WIDTH_FRACTION",
    "Point",
    "QuickDrawDrawing",
    "Stroke",
    "load_sketch",
    "load_strokes",
    "normalize_sketch",
    "rasterize",
    "read_quickdraw",
    "save_strokes",
    "strokes_from_json",
    "strokes_to_json",
]

SKETCH_SIZE = 256
SKETCH_FORMAT_VERSION = 1
"""Version of the canonical raster form (checkpoints record it): bump on any change to it."""

MARGIN_FRACTION = 0.08
STROKE_WIDTH_FRACTION = 3.0 / 256.0
ERASER_WIDTH_FRACTION = 0.04
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

_MIN_CONTRAST = 32
_BLANK_MESSAGE = "The sketch is empty: draw something first."


# ----------------------------------------------------------------------------- canonical core
def _canonical(ink: Image.Image, size: int) -> np.ndarray:
    """Ink mask ('L', 255 = ink) of any size to the canonical sketch (see the module docstring)."""
    bbox = ink.getbbox()
    if bbox is None:
        raise EmptySketchError(_BLANK_MESSAGE)
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
        raise EmptySketchError(_BLANK_MESSAGE)
    return _draw_lines(skel, 0.5 * STROKE_WIDTH_FRACTION * size)


def _draw_lines(skel: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased lines of ``radius`` around the skeleton: coverage clip(r + 0.5 - distance).

    The skeleton is 0/1, so the coverage of a pixel is the largest weight among the pen-footprint
    offsets at which a skeleton pixel lies: the offsets are grouped by weight, each group's
    shifted copies OR-ed as booleans, and the groups' weights maxed. The same result as a
    Euclidean distance transform, several times faster at these radii (0.3 ms at 256 px).
    """
    reach = math.ceil(radius + 0.5)
    h, w = skel.shape
    padded = np.pad(skel.astype(bool), reach)
    groups: dict[float, list[tuple[int, int]]] = {}
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            weight = min(1.0, radius + 0.5 - math.hypot(dx, dy))
            if weight > 0:
                groups.setdefault(weight, []).append((dy, dx))
    coverage = np.zeros((h, w), np.float32)
    for weight, offsets in groups.items():
        near = np.zeros((h, w), bool)
        for dy, dx in offsets:
            near |= padded[reach + dy : reach + dy + h, reach + dx : reach + dx + w]
        np.maximum(coverage, near * np.float32(weight), out=coverage)
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
        raise EmptySketchError(_BLANK_MESSAGE)
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
_MIN_SPAN = 1e-6
"""Drawing units: a drawing narrower than this is drawn as if it were this wide (a dot)."""
_FAR_PX = 1e6
"""Working-canvas pixels: eraser lines reaching further out are clipped before PIL draws them."""


def rasterize(
    strokes: Iterable[Stroke], size: int = SKETCH_SIZE, eraser_width: float | None = None
) -> np.ndarray:
    """Strokes (drawing units, y down) to the canonical uint8 (size, size) sketch.

    An eraser stroke's width is its own ``width`` when it has one, else ``eraser_width`` (drawing
    units), else ERASER_WIDTH_FRACTION of the ink's long side. Any strokes are safe: points are
    checked (``engine.strokes.check_strokes``), and an eraser is clipped to the drawing and at
    most twice as wide as its diagonal, so no width or position costs more than the drawing.
    """
    strokes, xy = check_strokes(strokes)
    is_ink = np.repeat([not s.eraser for s in strokes], [len(s.points) for s in strokes])
    if not is_ink.any():
        raise EmptySketchError(_BLANK_MESSAGE)
    if eraser_width is not None and not (math.isfinite(eraser_width) and eraser_width > 0):
        raise SketchError(f"An eraser width must be a positive number, not {eraser_width!r}.")
    lo, hi = xy[is_ink].min(axis=0), xy[is_ink].max(axis=0)
    span = float((hi - lo).max())
    work = 2 * size
    scale = work / max(span, _MIN_SPAN) if span > 0 else 1.0
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
            own = float(stroke.width) * scale if stroke.width is not None else erase
            _erase(draw, pts, own, ink.size)
            continue
        if len(pts) > 1:
            draw.line(pts, fill=255, width=pen, joint="curve")
        _caps(draw, pts, pen / 2.0, 255)
    return _canonical(ink, size)


def _caps(draw: ImageDraw.ImageDraw, pts: list[tuple[float, float]], r: float, fill: int) -> None:
    """Round caps at both ends (PIL lines have square ends)."""
    for x, y in (pts[0], pts[-1]):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)


def _erase(
    draw: ImageDraw.ImageDraw, pts: list[tuple[float, float]], width: float, canvas: tuple[int, int]
) -> None:
    """Paint paper along ``pts`` (canvas pixels), ``width`` wide, on a canvas of ``canvas`` size.

    The width is clamped to twice the canvas diagonal (from any point on the drawing, that erases
    all of it): PIL's cost grows with the square of a round cap's radius. A cap that cannot reach
    the canvas is left out, and a line with a point further out than ``_FAR_PX`` is clipped to the
    canvas grown by the eraser's reach (PIL takes int32 coordinates); a drawing's own eraser
    strokes are drawn exactly as they were.
    """
    width = max(1, round(min(width, 2.0 * math.hypot(*canvas) + 4.0)))
    r = width / 2.0
    reach = r + 2.0
    box = (-reach, -reach, canvas[0] + reach, canvas[1] + reach)
    if len(pts) > 1:
        far = any(abs(x) > _FAR_PX or abs(y) > _FAR_PX for x, y in pts)
        for run in _clip_polyline(pts, box) if far else [pts]:
            draw.line(run, fill=0, width=width, joint="curve")
    ends = [(x, y) for x, y in (pts[0], pts[-1]) if box[0] <= x <= box[2] and box[1] <= y <= box[3]]
    if ends:
        _caps(draw, ends, r, 0)


def _clip_polyline(
    pts: list[tuple[float, float]], box: tuple[float, float, float, float]
) -> list[list[tuple[float, float]]]:
    """The parts of a polyline inside ``box``, each a polyline; joints inside are kept."""
    runs: list[list[tuple[float, float]]] = []
    run: list[tuple[float, float]] = []
    for a, b in itertools.pairwise(pts):
        clipped = _clip_segment(a, b, box)
        if clipped is None:
            continue
        start, end = clipped
        if not (run and run[-1] == start):
            run = [start]
            runs.append(run)
        run.append(end)
        if end != b:  # left the box: the next part starts a new run
            run = []
    return runs


def _clip_segment(
    a: tuple[float, float], b: tuple[float, float], box: tuple[float, float, float, float]
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Liang-Barsky: the part of segment ``ab`` inside ``box``, or None. Inside ends stay exact."""
    (x0, y0), (x1, y1) = a, b
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 - box[0]), (dx, box[2] - x0), (-dy, y0 - box[1]), (dy, box[3] - y0)):
        if p == 0:
            if q < 0:
                return None
        elif p < 0:
            t0 = max(t0, q / p)
        else:
            t1 = min(t1, q / p)
        if t0 > t1:
            return None
    start = a if t0 == 0.0 else (x0 + t0 * dx, y0 + t0 * dy)
    end = b if t1 == 1.0 else (x0 + t1 * dx, y0 + t1 * dy)
    return start, end


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
