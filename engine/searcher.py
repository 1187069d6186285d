"""Search a library with a sketch: strokes or an image in, ranked photo paths out.

The query takes the same path as training sketches (``engine.sketch``: rasterise or normalise),
then the model's sketch encoder, the packed code, the binary index and the catalog. The index is
rebuilt in memory from the catalog's codes for the model (``refresh``): codes are bytes, so a
100k-photo library loads in well under a second. ``search`` may run on a worker thread while the
indexer writes; call ``refresh`` to see newly indexed photos.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from engine.index import BinaryIndex
from engine.library import Library
from engine.models import SketchHashModel, model_id
from engine.sketch import Stroke, load_sketch, normalize_sketch, rasterize

log = logging.getLogger(__name__)

SketchQuery = Sequence[Stroke] | np.ndarray | Image.Image | str | os.PathLike


@dataclass(frozen=True)
class SearchResult:
    rank: int  # 1-based
    path: Path
    distance: int  # Hamming distance out of ``bits``
    photo_id: int


@dataclass(frozen=True)
class SearchResponse:
    results: tuple[SearchResult, ...]
    timings_ms: dict[str, float]
    model_id: str
    bits: int
    indexed: int


def sketch_input(query: SketchQuery) -> np.ndarray:
    """Any supported query to the canonical uint8 sketch array."""
    if isinstance(query, str | os.PathLike):
        return load_sketch(query)
    if isinstance(query, Image.Image | np.ndarray):
        return normalize_sketch(query)
    return rasterize(list(query))


class Searcher:
    def __init__(self, library: Library, model: SketchHashModel) -> None:
        self.library = library
        self.model = model.eval()  # shared with the indexer's thread: its mode must not change
        self.model_id = model_id(model)
        self.bits = model.bits
        self._index = BinaryIndex(self.bits, self.model_id)
        self._lock = threading.Lock()
        self.refresh()

    @property
    def size(self) -> int:
        return len(self._index)

    def refresh(self) -> int:
        """Rebuild the in-memory index from the catalog's codes for this model."""
        ids, codes = self.library.catalog.codes_for(self.model_id, self.bits)
        index = BinaryIndex(self.bits, self.model_id)
        index.add(ids, codes)
        with self._lock:
            self._index = index
        log.debug("Search index holds %d codes of %s", len(ids), self.model_id)
        return len(ids)

    def search(self, query: SketchQuery, k: int = 50) -> SearchResponse:
        """The k photos nearest to the sketch (ties broken by photo id)."""
        t0 = time.perf_counter()
        sketch = sketch_input(query)
        t1 = time.perf_counter()
        code = self.model.encode_sketches(sketch[None])
        t2 = time.perf_counter()
        with self._lock:
            index = self._index
        matches = index.search(code, k)
        t3 = time.perf_counter()
        ids, dists = matches.ids[0], matches.distances[0]
        paths = self.library.catalog.paths_for(ids)
        # a photo removed since the last refresh has no path any more and is left out
        found = [(int(i), int(d)) for i, d in zip(ids, dists, strict=True) if int(i) in paths]
        results = tuple(
            SearchResult(rank=r, path=paths[i], distance=d, photo_id=i)
            for r, (i, d) in enumerate(found, start=1)
        )
        t4 = time.perf_counter()
        timings = {
            "normalize": (t1 - t0) * 1e3,
            "encode": (t2 - t1) * 1e3,
            "search": (t3 - t2) * 1e3,
            "lookup": (t4 - t3) * 1e3,
            "total": (t4 - t0) * 1e3,
        }
        return SearchResponse(results, timings, self.model_id, self.bits, len(index))
