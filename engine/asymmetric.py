"""Asymmetric ranking: the photos' binary codes against the sketch's unbinarised output.

A library holds one K-bit code per photo; a query is one sketch, encoded at search time, so its
real-valued output ``x`` (the values whose signs are its code) is at hand for free. Binarising it
throws away how sure each bit is. The asymmetric distance keeps it (Gordo, Perronnin, Gong and
Lazebnik, "Asymmetric distances for binary embeddings", TPAMI 2014; Dong et al. 2008):

    d(x, b) = (K - x' . s(b)) / 2,   x' = x * sqrt(K) / |x|,   s(b) = 2b - 1 in {-1, +1}^K

which is the Hamming distance when ``x`` is itself a code, and a finer, real-valued ranking when
it is not. The index stays binary: the engine's Faiss index picks the ``shortlist`` photos nearest
in Hamming distance to the query's code, and only those are ranked by ``d`` (K multiply-adds
each). The shortlist is at least k, so the asymmetric order never shows fewer photos.

Query expansion in this space (``expand`` m > 0): the query and the mean signed code of its m
nearest photos by ``d`` make a new real-valued query, ``x' + NEIGHBOUR_WEIGHT * mean s(b)``
(scaled back to norm sqrt(K)), and the shortlist is ranked by ``d`` to it. (A second Hamming
search with the expanded query's code, its shortlist joined to the first, cost three times as
much at a million photos: 12.5 against 3.9 ms; the first shortlist already holds the query's
neighbourhood.) Measured with the default model's recipe trained without the unseen20 classes
(binary mAP@all, 64 bits; see DEVELOPERS.md): Hamming 0.375, asymmetric 0.426, asymmetric with
expansion over 5 photos 0.499 (majority-vote expansion over 10: 0.442).

Stored photo values (``SketchHashModel.photo_values``: a category-level model with fitted codes,
the default among them; sign codes trained towards +-1 gain little or lose): the indexer
also stores each photo's unbinarised output, K float16 values (2K bytes, 128 for 64 bits), and
the shortlist (still found by Hamming distance in the binary index) is ranked with them in place
of the photo's signed code: s(b) becomes the photo's output scaled to norm sqrt(K), so ``d`` is
K (1 - cos) / 2, the cosine between the two outputs, and expansion averages the neighbours'
scaled outputs. A photo without stored values (indexed before they were) keeps its signed
code. The binarisation then costs the shortlist's order nothing; measured with the default
(mAP@all, QE 5 at weight 2, DEVELOPERS.md): unseen20 0.499 -> 0.579, their doodles 0.409 ->
0.463, the Sketchy test split 0.456 -> 0.515.

Equal distances (photos with equal codes) are ordered by photo id, as the index orders equal
Hamming distances; distances are rounded to 1e-6 so that equal codes tie exactly whatever path the
arithmetic took.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.codes import check_bits, pack_codes
from engine.errors import ConfigError
from engine.expansion import CodeTable, gallery_index
from engine.index import BinaryIndex

DEFAULT_ASYMMETRIC_SHORTLIST = 1000
NEIGHBOUR_WEIGHT = 2.0
DECIMALS = 6
CHUNK = 64  # queries ranked at once (bounds the (chunk, shortlist, K) working array)


@dataclass(frozen=True)
class AsymmetricMatches:
    """Per query: photo ids nearest first and their asymmetric distances (float64), (nq, k)."""

    ids: np.ndarray
    distances: np.ndarray


def signed(codes: np.ndarray, bits: int) -> np.ndarray:
    """Packed codes (..., K/8) to float32 (..., K) in {-1, +1}."""
    codes = np.asarray(codes, np.uint8)
    unpacked = np.unpackbits(codes, axis=-1, count=bits)
    return unpacked.astype(np.float32) * 2.0 - 1.0


def scaled_queries(values: np.ndarray) -> np.ndarray:
    """Real-valued queries (nq, K) scaled to norm sqrt(K), float64; a query of zeros (or with a
    value that is not finite) becomes its signed code, which is what the index searches with."""
    values = np.asarray(values, np.float64)
    if values.ndim != 2:
        raise ConfigError(f"Expected (n, K) query values, got shape {values.shape}.")
    bits = values.shape[1]
    check_bits(bits)
    finite = np.isfinite(values).all(axis=1)
    safe = np.where(finite[:, None], values, 0.0)
    norms = np.linalg.norm(safe, axis=1, keepdims=True)
    code = np.where(safe > 0, 1.0, -1.0)
    usable = (norms[:, 0] > 1e-12) & finite
    scaled = np.where(usable[:, None], safe * np.sqrt(bits) / np.maximum(norms, 1e-300), code)
    return scaled


def photo_vectors(table: CodeTable, ids: np.ndarray, bits: int) -> np.ndarray:
    """float64 ``ids.shape + (K,)`` vectors the shortlist is ranked with: each photo's stored
    values scaled to norm sqrt(K) where the table holds them (finite, not all zero), else its
    signed code."""
    values = table.lookup_values(ids)
    if values is None:
        return signed(table.lookup(ids), bits).astype(np.float64)
    v = values.astype(np.float64)
    norms = np.sqrt(np.einsum("...k,...k->...", v, v))  # NaN or inf where a value is
    usable = np.isfinite(norms) & (norms > 1e-12)
    if usable.all():  # the usual case: no codes to unpack
        return v * (np.sqrt(bits) / norms)[..., None]
    codes = signed(table.lookup(ids), bits).astype(np.float64)
    scaled = v * (np.sqrt(bits) / np.where(usable, norms, 1.0))[..., None]
    return np.where(usable[..., None], scaled, codes)


def asymmetric_distances(queries: np.ndarray, signed_codes: np.ndarray) -> np.ndarray:
    """Scaled queries (nq, K) against signed codes or scaled photo values (``photo_vectors``),
    (nq, t, K) (each query its own candidates) or (t, K) (shared): (nq, t) distances
    ``(K - x . s) / 2``, rounded to DECIMALS."""
    bits = queries.shape[-1]
    s = np.asarray(signed_codes, np.float64)
    dots = queries @ s.T if s.ndim == 2 else np.einsum("qk,qtk->qt", queries, s)
    return np.round((bits - dots) / 2.0, DECIMALS)


def expand_scaled(queries: np.ndarray, neighbours: np.ndarray, weight: float) -> np.ndarray:
    """Scaled queries (nq, K) and their neighbours' vectors (nq, m, K; ``photo_vectors``) to the
    expanded, scaled queries: ``x' + weight * mean s(b)``, back to norm sqrt(K)."""
    if not (np.isfinite(weight) and weight >= 0):
        raise ConfigError(f"The neighbours' weight must be >= 0; got {weight}.")
    if neighbours.shape[1] == 0:
        return queries.copy()
    return scaled_queries(queries + weight * np.asarray(neighbours, np.float64).mean(axis=1))


def asymmetric_search(
    index: BinaryIndex,
    table: CodeTable,
    values: np.ndarray,
    k: int,
    *,
    shortlist: int = DEFAULT_ASYMMETRIC_SHORTLIST,
    expand: int = 0,
    weight: float = NEIGHBOUR_WEIGHT,
) -> AsymmetricMatches:
    """The k photos of ``index`` nearest to each real-valued query (nq, K) by asymmetric distance,
    among the max(k, ``shortlist``) nearest by Hamming distance to its code (and, with
    ``expand``, to the expanded query's code). ``table`` holds the index's ids and codes, and
    the photos' stored values where the library keeps them (``photo_vectors``)."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] != index.bits:
        raise ConfigError(f"Query values {values.shape} do not fit a {index.bits}-bit index.")
    if expand < 0:
        raise ConfigError(f"Query expansion needs m >= 0 neighbours; got {expand}.")
    if k < 1 or shortlist < 1:
        raise ConfigError(f"k and the shortlist must be at least 1; got {k} and {shortlist}.")
    n = len(index)
    width = min(max(k, shortlist), n)
    nq = len(values)
    if width == 0:
        empty = np.empty((nq, 0))
        return AsymmetricMatches(empty.astype(np.int64), empty)
    out_k = min(k, n)
    ids_out = np.empty((nq, out_k), np.int64)
    dist_out = np.empty((nq, out_k), np.float64)
    for start in range(0, nq, CHUNK):
        x = scaled_queries(values[start : start + CHUNK])
        ids = index.search(pack_codes(x), width).ids
        codes = photo_vectors(table, ids, index.bits)
        dist = asymmetric_distances(x, codes)
        order = _order(ids, dist)
        if expand:
            near = order[:, : min(expand, width)]
            x = expand_scaled(x, np.take_along_axis(codes, near[:, :, None], axis=1), weight)
            dist = asymmetric_distances(x, codes)
            order = _order(ids, dist)
        ids_out[start : start + len(x)] = np.take_along_axis(ids, order, axis=1)[:, :out_k]
        dist_out[start : start + len(x)] = np.take_along_axis(dist, order, axis=1)[:, :out_k]
    return AsymmetricMatches(ids_out, dist_out)


def _order(ids: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Positions of each row sorted by distance, then photo id."""
    return np.stack([np.lexsort((i, d)) for i, d in zip(ids, dist, strict=True)])


def asymmetric_against_gallery(
    values: np.ndarray,
    gallery: np.ndarray,
    bits: int,
    *,
    expand: int = 0,
    weight: float = NEIGHBOUR_WEIGHT,
    photo_values: np.ndarray | None = None,
) -> AsymmetricMatches:
    """Full ranking of a gallery's packed codes (photo ids 0..n-1) for real-valued queries: what
    a search with k = the gallery's size returns (the shortlist is then the whole gallery);
    ``photo_values``: the gallery's (n, K) outputs, stored as a library stores them."""
    index, table = gallery_index(gallery, bits)
    if photo_values is not None:
        ids = np.arange(len(gallery), dtype=np.int64)
        table = CodeTable.from_pairs(ids, table.codes, (ids, photo_values))
    n = max(len(table), 1)
    return asymmetric_search(index, table, values, n, shortlist=n, expand=expand, weight=weight)
