"""Search a library with a sketch: strokes or an image in, ranked photo paths out.

The query takes the same path as training sketches (``engine.sketch_input``: rasterise or normalise
with ``engine.sketch``), then the model's sketch encoder, the packed code, the binary index and the
catalog. The index is rebuilt in memory from the catalog's codes for the model (``refresh``): codes
are bytes, so a 100k-photo library loads in well under a second. ``search`` may run on a worker
thread while the indexer writes; call ``refresh`` to see newly indexed photos. ``not_indexed`` (and
each response's) counts the library's readable photos that have no code for this model, e.g. in a
library indexed with another model too: they are not searched until indexed with this one.

Re-ranking (``search(..., rerank=True)``): for a method with ``rerank_features`` (DSSA), the
``shortlist`` nearest photos by Hamming distance are re-ordered by the method's exact distance
(HOLEF) between the query's real-valued feature and the photos' stored float16 features, then
the first k are returned; each result then carries that distance as ``score``. The shortlist
is at least k, so re-ranking never drops a photo the Hamming ranking would have shown.
Where re-ranking cannot run, the search falls back to the Hamming order rather than failing
(a sketch search should always answer), logs why, and says why in ``SearchResponse.rerank_note``:
- the model's method has no exact distance (``rerank_features`` False): nothing changes;
- a shortlisted photo has no stored feature for the model (a catalog indexed by an older
  version): the note asks to run the indexer again, which stores the missing features.

Asymmetric ranking (the default of every category-level model, ``model.asymmetric``;
``engine.asymmetric``): the max(k, 1000) nearest codes by Hamming distance are ranked by their
distance to the sketch's unbinarised output (against the photos' stored outputs, which the
searcher holds in memory with the codes: ``model.photo_values``, 2K bytes a photo), and
expansion moves that output towards its m nearest photos'; each result then carries that
distance as ``score`` (``distance`` stays the Hamming distance to the sketch's own code).
``asymmetric=False`` gives the Hamming path below.

Query expansion on the Hamming path (``search(..., expand=m, asymmetric=False)``,
``engine.expansion``): the query code and the codes of its m nearest photos vote bit by bit on
a new code (ties keep the query's bit; the query's vote weighs ``query_weight``), and the index
is searched again with it; results then report Hamming distances to the expanded code. The
searcher keeps a numpy copy of the index's ids and codes (``CodeTable``, built with the index on
``refresh``) to read the neighbours' codes without a catalog round trip; both paths use it.
``DEFAULT_EXPAND`` is the one default, for the app and the command line.

Photo queries (``search_photo``, "more like this photo"): a photo is encoded with the model's
photo encoder, exactly as the indexer encodes the library, and searched in the same index.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from engine.asymmetric import DEFAULT_ASYMMETRIC_SHORTLIST, asymmetric_search
from engine.codes import hamming_reference, pack_codes
from engine.defaults import DEFAULT_EXPAND  # defined without imports, for the app's start-up
from engine.errors import ImageLoadError
from engine.expansion import DEFAULT_QUERY_WEIGHT, CodeTable, expand_queries
from engine.images import load_photo, prepare_photo
from engine.index import BinaryIndex
from engine.library import Library
from engine.models import SketchHashModel, model_id
from engine.query_encoder import QueryEncoder
from engine.sketch_input import SketchQuery, sketch_input

log = logging.getLogger(__name__)

PhotoQuery = Image.Image | np.ndarray | str | os.PathLike  # a photo file, or its pixels


@dataclass(frozen=True)
class SearchResult:
    """One photo found: its rank, path, Hamming distance and catalog id (and the exact distance when
    re-ranked)."""

    rank: int  # 1-based
    path: Path
    distance: int  # Hamming distance out of ``bits``
    photo_id: int
    score: float | None = None  # the distance ranked by: exact (HOLEF) or asymmetric, if used


@dataclass(frozen=True)
class SearchResponse:
    """The results of one search, with timings (ms per stage), the model, how many photos the index
    holds, and what was done (re-ranked, expanded) or why not."""

    results: tuple[SearchResult, ...]
    timings_ms: dict[str, float]
    model_id: str
    bits: int
    indexed: int
    reranked: bool = False
    rerank_note: str | None = None  # why re-ranking was asked for but not done
    not_indexed: int = 0  # readable photos without a code for this model: not searched
    expanded: int = 0  # neighbours that voted on the query code (0: not expanded)
    asymmetric: bool = False  # ranked by asymmetric distance (``engine.asymmetric``)


DEFAULT_SHORTLIST = 100


def rerank_shortlist(
    model: SketchHashModel, feature: np.ndarray, shortlist: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank a Hamming shortlist by the model's exact distance (``feature_distances``):
    ``feature`` is the query's (1, D) feature, ``shortlist`` the (t, D) stored features of the
    shortlisted photos in Hamming order. Returns the new order (positions in the shortlist;
    equal distances keep the Hamming order) and the distances in that order. The searcher
    re-ranks with it, and evaluation measures re-ranking with it."""
    dist = model.feature_distances(feature, shortlist)[0]
    order = np.argsort(dist, kind="stable")
    return order, dist[order]


class Searcher:
    """Searches one library with one model: holds the in-memory index of the catalog's codes for the
    model (``refresh`` rebuilds it) and answers sketch (``search``) and photo (``search_photo``)
    queries; safe to call from a worker thread while the indexer writes."""

    def __init__(
        self, library: Library, model: SketchHashModel, *, query_threads: int | None = None
    ) -> None:
        self.library = library
        self.model = model.eval()  # shared with the indexer's thread: its mode must not change
        self.model_id = model_id(model)
        self.bits = model.bits
        # the sketch side, frozen for one query, on query_threads torch threads (None: the
        # process's)
        self.encoder = QueryEncoder(self.model, query_threads)
        self._index = BinaryIndex(self.bits, self.model_id)
        self._table = CodeTable.from_pairs(np.empty(0, np.int64), np.empty((0, self.bits // 8)))
        self._lock = threading.Lock()
        self.not_indexed = 0
        self.refresh()

    def warm_up(self) -> None:
        """Prepare the query encoder now (``engine.query_encoder``), off the first search."""
        self.encoder.warm_up()

    @property
    def size(self) -> int:
        """Codes in the index: the photos a search sees."""
        return len(self._index)

    def refresh(self) -> int:
        """Rebuild the in-memory index from the catalog's codes for this model, and the table
        of their codes and (``photo_values``) the photos' stored outputs."""
        catalog = self.library.catalog
        ids, codes = catalog.codes_for(self.model_id, self.bits)
        not_indexed = catalog.uncoded_count(self.model_id)
        index = BinaryIndex(self.bits, self.model_id)
        index.add(ids, codes)
        values = None
        if self.model.photo_values:  # the photos' outputs, which the shortlist is ranked with
            values = catalog.all_features(self.model_id, self.bits)
        table = CodeTable.from_pairs(ids, codes, values)
        with self._lock:
            self._index, self._table = index, table
            self.not_indexed = not_indexed
        log.debug("Search index holds %d codes of %s", len(ids), self.model_id)
        return len(ids)

    def search(
        self,
        query: SketchQuery,
        k: int = 50,
        *,
        rerank: bool = False,
        shortlist: int = DEFAULT_SHORTLIST,
        expand: int = DEFAULT_EXPAND,
        query_weight: float = DEFAULT_QUERY_WEIGHT,
        asymmetric: bool | None = None,
    ) -> SearchResponse:
        """The k photos nearest to the sketch (ties broken by photo id); ``rerank``: the first
        max(k, ``shortlist``) by Hamming distance re-ordered by the model's exact distance;
        ``asymmetric`` (default: ``model.asymmetric``, every category-level method): the first
        max(k, DEFAULT_ASYMMETRIC_SHORTLIST) by Hamming distance ranked by the asymmetric
        distance to the sketch's unbinarised output (``engine.asymmetric``); ``expand``: the
        query expanded by its ``expand`` nearest photos (in the asymmetric space, or by a
        majority vote on the code when not asymmetric; ignored for a model that does not
        expand, ``model.expands``: fine-grained DSSA)."""
        t0 = time.perf_counter()
        sketch = sketch_input(query)
        t1 = time.perf_counter()
        note = None
        if rerank and not self.model.rerank_features:
            note = f"{self.model.method} has no exact distance to re-rank by; Hamming order kept."
            log.info(note)
            rerank = False
        if expand and not self.model.expands:
            expand = 0  # fine-grained: the query's neighbours are other instances
        if asymmetric is None:
            asymmetric = self.model.asymmetric
        asymmetric = asymmetric and not rerank
        values = None
        if rerank:
            code, feature = self.model.encode_sketches_and_features(sketch[None])
        elif asymmetric:
            values = self.encoder.embed(sketch[None])
            code = pack_codes(values)
        else:
            code = pack_codes(self.encoder.embed(sketch[None]))
        t2 = time.perf_counter()
        with self._lock:
            index, table, not_indexed = self._index, self._table, self.not_indexed
        timings = {}
        scores: list[float | None]
        if values is not None:
            ranked = asymmetric_search(
                index, table, values, k, shortlist=DEFAULT_ASYMMETRIC_SHORTLIST, expand=expand
            )
            ids, asym = ranked.ids[0], ranked.distances[0]
            dists = np.zeros(len(ids), np.int64)
            if len(ids):  # the Hamming distance of each photo to the query's own code
                dists = hamming_reference(code, table.lookup(ids))[0]
        else:
            if expand:
                code = expand_queries(index, table, code, expand, query_weight)
                timings["expand"] = (time.perf_counter() - t2) * 1e3
            matches = index.search(code, max(k, shortlist) if rerank else k)
            ids, dists, asym = matches.ids[0], matches.distances[0], None
        t3 = time.perf_counter()
        paths = self.library.catalog.paths_for(ids)
        # a photo removed since the last refresh has no path any more and is left out
        keep = [j for j, i in enumerate(ids) if int(i) in paths]
        found = [(int(ids[j]), int(dists[j])) for j in keep]
        scores = [None] * len(found) if asym is None else [float(asym[j]) for j in keep]
        if rerank and found:
            found, scores, note = self._rerank(feature, found)
            timings["rerank"] = (time.perf_counter() - t3) * 1e3
        found, scores = found[:k], scores[:k]
        results = tuple(
            SearchResult(rank=r, path=paths[i], distance=d, photo_id=i, score=sc)
            for r, ((i, d), sc) in enumerate(zip(found, scores, strict=True), start=1)
        )
        t4 = time.perf_counter()
        timings = {
            "normalize": (t1 - t0) * 1e3,
            "encode": (t2 - t1) * 1e3,
            "search": (t3 - t2) * 1e3 - timings.get("expand", 0.0),
            **timings,
            "lookup": (t4 - t3) * 1e3 - timings.get("rerank", 0.0),
            "total": (t4 - t0) * 1e3,
        }
        return SearchResponse(
            results,
            timings,
            self.model_id,
            self.bits,
            len(index),
            reranked=rerank and note is None,
            rerank_note=note,
            not_indexed=not_indexed,
            expanded=min(expand, len(index)),
            asymmetric=values is not None,
        )

    def search_photo(self, photo: PhotoQuery, k: int = 50) -> SearchResponse:
        """The k photos nearest to a photo ("more like this photo"), by the model's photo
        encoder: a file goes the indexer's own way (decoded upright, ``prepare_photo``), so a
        photo of the library finds itself first, at distance 0. Searched as it is: no
        re-ranking, no expansion (both are defined for sketch queries)."""
        t0 = time.perf_counter()
        size = self.model.photo_size
        if isinstance(photo, str | os.PathLike):
            image = load_photo(photo, target_size=size)
        elif isinstance(photo, np.ndarray):
            array = np.asarray(photo)
            if array.dtype != np.uint8 or array.ndim not in (2, 3):
                raise ImageLoadError(
                    f"A photo must be a uint8 grey or RGB image, not {array.dtype} {array.shape}."
                )
            image = Image.fromarray(np.ascontiguousarray(array))
        else:
            image = photo
        prepared = prepare_photo(image, size)
        t1 = time.perf_counter()
        code = self.model.encode_photos(prepared[None])
        t2 = time.perf_counter()
        with self._lock:
            index, not_indexed = self._index, self.not_indexed
        matches = index.search(code, k)
        t3 = time.perf_counter()
        ids, dists = matches.ids[0], matches.distances[0]
        paths = self.library.catalog.paths_for(ids)
        found = [(int(i), int(d)) for i, d in zip(ids, dists, strict=True) if int(i) in paths]
        results = tuple(
            SearchResult(rank=r, path=paths[i], distance=d, photo_id=i)
            for r, (i, d) in enumerate(found[:k], start=1)
        )
        t4 = time.perf_counter()
        timings = {
            "normalize": (t1 - t0) * 1e3,
            "encode": (t2 - t1) * 1e3,
            "search": (t3 - t2) * 1e3,
            "lookup": (t4 - t3) * 1e3,
            "total": (t4 - t0) * 1e3,
        }
        return SearchResponse(
            results, timings, self.model_id, self.bits, len(index), not_indexed=not_indexed
        )

    def _rerank(
        self, feature: np.ndarray, found: list[tuple[int, int]]
    ) -> tuple[list[tuple[int, int]], list[float | None], str | None]:
        """``found`` (id, Hamming) re-ordered by the exact distance to ``feature`` (ties: the
        Hamming order), with the distances; unchanged with a note if features are missing."""
        stored = self.library.catalog.features_for(self.model_id, [i for i, _ in found])
        missing = sum(1 for i, _ in found if i not in stored)
        if missing:
            note = (
                f"{missing} of the {len(found)} shortlisted photos have no stored features for "
                f"{self.model_id}; Hamming order kept. Index the library again to store them."
            )
            log.warning(note)
            return found, [None] * len(found), note
        order, dist = rerank_shortlist(self.model, feature, np.stack([stored[i] for i, _ in found]))
        return [found[j] for j in order], [float(d) for d in dist], None
