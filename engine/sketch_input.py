"""Any sketch query to the canonical sketch: strokes, an image or a sketch file in, the uint8
(``SKETCH_SIZE``, ``SKETCH_SIZE``) array a model's sketch encoder takes out, by the same
normalisation training sketches get (``engine.sketch``). The searcher and the imagine view both
start a query here."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from engine.sketch import Stroke, load_sketch, normalize_sketch, rasterize

SketchQuery = Sequence[Stroke] | np.ndarray | Image.Image | str | os.PathLike


def sketch_input(query: SketchQuery) -> np.ndarray:
    """Any supported query to the canonical uint8 sketch array: a file is loaded
    (``load_sketch``), an image normalised (``normalize_sketch``), strokes rasterised as the
    canvas draws them (``rasterize``)."""
    if isinstance(query, str | os.PathLike):
        return load_sketch(query)
    if isinstance(query, Image.Image | np.ndarray):
        return normalize_sketch(query)
    return rasterize(list(query))
