"""The canonical sketch: rasterising strokes and normalising images must give one form."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace
from itertools import islice

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.morphology import skeletonize

from engine.errors import SketchError
from engine.sketch import (
    MARGIN_FRACTION,
    SKETCH_SIZE,
    STROKE_WIDTH_FRACTION,
    Point,
    Stroke,
    load_sketch,
    load_strokes,
    normalize_sketch,
    rasterize,
    read_quickdraw,
    save_strokes,
    strokes_from_json,
    strokes_to_json,
)
from engine.sketch import _draw_lines as draw_lines

from .chairv2 import read_chairv2

SKETCHY_PNG = "sketchy/sketches/airplane/n02691156_10151-1.png"


def ink(a: np.ndarray) -> np.ndarray:
    return a < 128


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((ink(a) & ink(b)).sum() / (ink(a) | ink(b)).sum())


def tolerant_f(a: np.ndarray, b: np.ndarray, tol: float = 2.0) -> float:
    """F-score of ink pixels that lie within ``tol`` px of the other drawing's ink."""
    da, db = ndimage.distance_transform_edt(~ink(a)), ndimage.distance_transform_edt(~ink(b))
    precision, recall = (db[ink(a)] <= tol).mean(), (da[ink(b)] <= tol).mean()
    return float(2 * precision * recall / (precision + recall))


def assert_canonical(a: np.ndarray, size: int = SKETCH_SIZE) -> None:
    assert a.dtype == np.uint8 and a.shape == (size, size)
    assert np.median(a) == 255 and (a[0] == 255).all() and (a[:, -1] == 255).all()
    ys, xs = np.nonzero(ink(a))
    assert len(xs) > 0.005 * size * size
    margin = MARGIN_FRACTION * size
    lo = np.array([xs.min(), ys.min()], float)
    hi = np.array([xs.max() + 1, ys.max() + 1], float)
    extent = hi - lo
    long_axis = int(np.argmax(extent))
    # Stroke centre lines span the inner box; the drawn line reaches ~1.5 px past them.
    assert abs(lo[long_axis] - margin) <= 3.0 and abs(size - hi[long_axis] - margin) <= 3.0
    assert abs((lo[1 - long_axis] + hi[1 - long_axis]) / 2 - size / 2) <= 2.0


def render(strokes: list[Stroke], scale: float, width: int, side: int) -> Image.Image:
    """The strokes drawn as a plain image, like a sketch saved by another program."""
    img = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(img)
    for s in strokes:
        pts = [(p.x * scale, p.y * scale) for p in s.points]
        if len(pts) > 1:
            draw.line(pts, fill=0, width=width, joint="curve")
    return img


@pytest.fixture(scope="module")
def chair_strokes(shared_data) -> list[tuple[str, list[Stroke]]]:
    return list(islice(read_chairv2(shared_data / "chairv2_strokes/strokes.jsonl.gz"), 8))


@pytest.mark.parametrize("word", ["apple", "airplane", "The_Eiffel_Tower", "ant"])
def test_quickdraw_rasterises_to_canonical_form(shared_data, word):
    drawings = list(read_quickdraw(shared_data / f"quickdraw/{word}.ndjson.gz", limit=3))
    assert len(drawings) == 3 and all(d.word == word.replace("_", " ") for d in drawings)
    for drawing in drawings:
        times = [p.t for s in drawing.strokes for p in s.points]
        assert times == sorted(times) and times[-1] > 0
        assert_canonical(rasterize(drawing.strokes))


def test_normalize_is_stable_across_scale_and_pen_width(shared_data, chair_strokes):
    sketch = Image.open(shared_data / SKETCHY_PNG)
    one = normalize_sketch(sketch)
    assert_canonical(one)
    two = normalize_sketch(sketch.resize((512, 512), Image.Resampling.BICUBIC))
    assert iou(one, two) > 0.6 and tolerant_f(one, two) > 0.97
    # Same pen, drawing three times bigger: the output line width must not follow the drawing.
    for _, strokes in chair_strokes[:4]:
        small, big = render(strokes, 1, 2, 256), render(strokes, 3, 2, 768)
        a, b = normalize_sketch(small), normalize_sketch(big)
        assert tolerant_f(a, b) > 0.97
        assert 0.8 < ink(a).sum() / ink(b).sum() < 1.25


def test_thin_lines_survive_a_large_reduction():
    img = Image.new("L", (3000, 2000), 255)
    ImageDraw.Draw(img).rectangle((100, 100, 2900, 1900), outline=0, width=1)
    out = normalize_sketch(img)
    assert_canonical(out)
    middle = out[SKETCH_SIZE // 2]
    assert ink(middle[:40]).any() and ink(middle[-40:]).any()  # both short sides kept


def test_inverted_and_transparent_inputs_match(shared_data):
    grey = np.asarray(Image.open(shared_data / SKETCHY_PNG).convert("L"))
    reference = normalize_sketch(grey)
    np.testing.assert_array_equal(normalize_sketch(255 - grey), reference)
    rgba = np.zeros((*grey.shape, 4), np.uint8)  # black ink on a transparent ground
    rgba[..., 3] = 255 - grey
    np.testing.assert_array_equal(normalize_sketch(Image.fromarray(rgba, "RGBA")), reference)
    as_float = normalize_sketch(grey.astype(np.float32) / 255.0)
    assert tolerant_f(as_float, reference, tol=1.0) > 0.98
    assert normalize_sketch(Image.fromarray(grey).convert("RGB"), size=128).shape == (128, 128)


@pytest.mark.parametrize(
    "blank",
    [np.full((200, 300), 255, np.uint8), np.zeros((64, 64), np.uint8), np.full((50, 50), 120.0)],
    ids=["white", "black", "flat-grey"],
)
def test_blank_image_raises(blank):
    with pytest.raises(SketchError, match="draw something"):
        normalize_sketch(blank)


def line(x0, y0, x1, y1, eraser=False, n=20) -> Stroke:
    pts = tuple(Point(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n, t=i) for i in range(n + 1))
    return Stroke(pts, eraser)


SQUARE = [line(0, 0, 100, 0), line(100, 0, 100, 100), line(100, 100, 0, 100), line(0, 100, 0, 0)]


def test_blank_strokes_raise():
    cases = {
        "no strokes": ([], None),
        "eraser only": ([line(0, 0, 50, 50, eraser=True)], None),
        "all erased": ([*SQUARE, line(-20, 50, 120, 50, eraser=True)], 400.0),
    }
    for name, (strokes, eraser_width) in cases.items():
        with pytest.raises(SketchError, match="draw something"):
            rasterize(strokes, eraser_width=eraser_width)
            pytest.fail(name)


def test_eraser_removes_earlier_ink_only():
    plain = rasterize(SQUARE)
    erased = rasterize([*SQUARE, line(30, 0, 70, 0, eraser=True)], eraser_width=10)
    top = int(MARGIN_FRACTION * SKETCH_SIZE)
    top_band = slice(top - 4, top + 5)
    middle = slice(SKETCH_SIZE * 2 // 5, SKETCH_SIZE * 3 // 5)
    assert ink(plain[top_band, middle]).any(axis=0).all()
    assert not ink(erased[top_band, middle]).any()
    assert ink(erased[SKETCH_SIZE // 2, :40]).any()  # the left side is untouched
    # An eraser stroke before the ink it crosses removes nothing.
    before = rasterize([line(30, 0, 70, 0, eraser=True), *SQUARE], eraser_width=10)
    np.testing.assert_array_equal(before, plain)


def test_an_eraser_stroke_uses_its_own_width():
    cut = line(30, 3, 70, 3, eraser=True)  # 3 units below the top edge of the square
    thin = rasterize([*SQUARE, replace(cut, width=0.5)], eraser_width=40)
    wide = rasterize([*SQUARE, replace(cut, width=10)])
    np.testing.assert_array_equal(thin, rasterize(SQUARE))  # its own half unit misses the ink
    top = int(MARGIN_FRACTION * SKETCH_SIZE)
    middle = slice(SKETCH_SIZE * 2 // 5, SKETCH_SIZE * 3 // 5)
    assert not ink(wide[top - 4 : top + 5, middle]).any()  # 10 units wide reaches it
    np.testing.assert_array_equal(wide, rasterize([*SQUARE, cut], eraser_width=10))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(SketchError, match="positive"):
            replace(cut, width=bad)


def test_rasterize_matches_normalize_of_the_rendered_image(chair_strokes):
    """The one-path promise: canvas strokes look like the same sketch loaded as an image."""
    for key, strokes in chair_strokes:
        assert key.startswith(("train/", "test/")) and len(strokes) > 1
        from_strokes = rasterize(strokes)
        from_image = normalize_sketch(render(strokes, 2, 3, 512))
        assert_canonical(from_strokes)
        assert tolerant_f(from_strokes, from_image) > 0.97, key
        assert iou(from_strokes, from_image) > 0.6, key


def test_json_round_trip(tmp_path):
    strokes = [
        Stroke((Point(1.5, 2.0, 0.4, 0.0), Point(10.0, 20.25, 0.9, 16.0))),
        Stroke((Point(5.0, 5.0), Point(6.0, 7.0)), eraser=True),
        Stroke((Point(5.0, 5.0), Point(9.0, 7.0)), eraser=True, width=12.5),
    ]
    assert strokes_from_json(json.loads(json.dumps(strokes_to_json(strokes)))) == strokes
    path = save_strokes(tmp_path / "s.json", strokes)
    assert load_strokes(path) == strokes
    np.testing.assert_array_equal(load_sketch(path), rasterize(strokes))


def test_load_strokes_accepts_quickdraw_forms(tmp_path, shared_data):
    drawing = next(read_quickdraw(shared_data / "quickdraw/apple.ndjson.gz"))
    raw = [[[p.x for p in s.points], [p.y for p in s.points]] for s in drawing.strokes]
    (tmp_path / "bare.json").write_text(json.dumps(raw))
    (tmp_path / "line.ndjson").write_text(json.dumps({"word": "apple", "drawing": raw}))
    for name in ("bare.json", "line.ndjson"):
        loaded = load_strokes(tmp_path / name)
        assert [[(p.x, p.y) for p in s.points] for s in loaded] == [
            [(p.x, p.y) for p in s.points] for s in drawing.strokes
        ]


@pytest.mark.parametrize(
    "obj",
    [
        {"format": "other", "version": 1, "strokes": []},
        {"format": "sketch-search-strokes", "version": 99, "strokes": []},
        {"format": "sketch-search-strokes", "version": 1, "strokes": [{"points": [[1]]}]},
        {"format": "sketch-search-strokes", "version": 1},
        "just text",
        [[[1, 2], [3]]],
    ],
)
def test_malformed_strokes_raise(obj):
    with pytest.raises(SketchError):
        strokes_from_json(obj)


def test_load_sketch_errors_name_the_file(tmp_path, shared_data):
    np.testing.assert_array_equal(
        load_sketch(shared_data / SKETCHY_PNG),
        normalize_sketch(Image.open(shared_data / SKETCHY_PNG)),
    )
    bad_json = tmp_path / "broken.json"
    bad_json.write_text("{not json")
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(blank)
    for path in (bad_json, not_image, blank, tmp_path / "missing.png"):
        with pytest.raises(SketchError, match=path.name):
            load_sketch(path)


def test_chairv2_reader_reads_every_sketch(shared_data):
    sketches = list(read_chairv2(shared_data / "chairv2_strokes/strokes.jsonl.gz"))
    assert len(sketches) == 1275 and len({k for k, _ in sketches}) == 1275
    xy = np.array([(p.x, p.y) for _, strokes in sketches[:50] for s in strokes for p in s.points])
    assert xy.min() >= -1 and xy.max() <= 257


def test_normalize_is_fast(shared_data):
    sketch = Image.open(shared_data / SKETCHY_PNG)
    normalize_sketch(sketch)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        normalize_sketch(sketch)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.025  # ~4 ms alone; slack for a shared CI machine


@pytest.mark.parametrize("size", [96, 256, 512])
def test_lines_are_the_pen_coverage_of_the_distance_to_the_skeleton(size, shared_data):
    """_draw_lines against its definition, coverage clip(r + 0.5 - d) with d the Euclidean
    distance to the nearest skeleton pixel, on the skeletons of real doodles."""
    radius = 0.5 * STROKE_WIDTH_FRACTION * size
    files = sorted((shared_data / "quickdraw").glob("*.ndjson.gz"))[::40][:6]
    for path in files:
        drawing = next(read_quickdraw(path, limit=1))
        skel = skeletonize(rasterize(drawing.strokes, size=size) < 128)
        distance = ndimage.distance_transform_edt(~skel)
        coverage = np.clip(radius + 0.5 - distance, 0.0, 1.0)
        want = np.round(255.0 * (1.0 - coverage))
        got = draw_lines(skel, radius).astype(np.float64)
        assert np.abs(got - want).max() <= 1.0  # float32 against float64 rounding
        assert (got == want).mean() > 0.999
