"""Stroke dropout on real QuickDraw drawings: rate, at least one stroke kept, erasers kept, and
the result still goes through the one canonical rasterisation."""

import random

import numpy as np
import pytest

from engine.sketch import Point, Stroke, rasterize, read_quickdraw
from training.augment import drop_strokes


@pytest.fixture(scope="module")
def drawings(shared_data):
    return [
        d.strokes for d in read_quickdraw(shared_data / "quickdraw" / "cat.ndjson.gz", limit=40)
    ]


def test_dropout_rate_and_order(drawings):
    rng = random.Random(0)
    total = kept = 0
    for strokes in drawings:
        out = drop_strokes(strokes, 0.3, rng)
        assert out and all(s in strokes for s in out)
        assert [strokes.index(s) for s in out] == sorted(strokes.index(s) for s in out)
        total += len(strokes)
        kept += len(out)
    assert 0.6 < kept / total < 0.8  # about 70% of strokes survive p = 0.3
    assert drop_strokes(drawings[0], 0.0, rng) == list(drawings[0])


def test_keeps_one_ink_stroke_and_every_eraser(drawings):
    eraser = Stroke((Point(0, 0), Point(5, 5)), eraser=True)
    strokes = [*drawings[0], eraser]
    for seed in range(20):
        out = drop_strokes(strokes, 0.99, random.Random(seed))
        assert eraser in out
        assert sum(not s.eraser for s in out) >= 1
    with pytest.raises(ValueError, match="probability"):
        drop_strokes(strokes, 1.0, random.Random(0))


def test_dropped_sketch_has_less_ink_but_stays_canonical(drawings):
    strokes = max(drawings, key=len)
    full = rasterize(strokes)
    thinned = rasterize(drop_strokes(strokes, 0.5, random.Random(1)))
    assert thinned.shape == full.shape and thinned.dtype == np.uint8
    assert (thinned < 128).sum() < (full < 128).sum()
