"""Faiss binary index of packed codes with explicit int64 ids (the catalog's photo ids).

``BinaryIndex`` wraps ``IndexBinaryIDMap2(IndexBinaryFlat)``: exact Hamming search, ids chosen by
the catalog. Results are ordered by distance, then by id ascending, so rankings
are deterministic where distances tie (they often do with short codes). To keep that exact at the
k-th place, a search asks Faiss for more than k and, only when the ties run past what it got,
widens to a range search that returns every code at the boundary distance.

Every index carries the id of the model and the bit count that made its codes, and refuses codes
of another width. It lives in memory only: the searcher rebuilds it from the catalog's codes for
its model (``engine.searcher.Searcher.refresh``), fast because codes are bytes, so there is no
saved index to fall out of step with the catalog. All methods take a lock, so searching from one
thread while another adds is safe.

Faiss's flat index finds the k nearest by counting codes per distance (``use_heap = False``)
rather than through a heap: the same codes at every distance short of the k-th, and at the k-th
the first ones it meets, which the tie rule above then orders by id. One query over a million
64-bit codes: 1.1 ms against 1.5 for k = 100, 1.4 against 2.7 for the 2000 codes fetched for the
asymmetric ranking's 1000-code shortlist (``engine.asymmetric``).

Faiss runs on one thread (``FAISS_THREADS``). Its OpenMP threads help batches of queries only: one
query over a million 64-bit codes took 2.3 ms on two threads and on one. After each search they
spin, waiting for more work, on the cores torch then needs to encode the next sketch (the two
libraries bring their own OpenMP runtimes): the bench's query end to end at a million codes went
from 34-42 ms to 17-23 ms on this project's 2-core machine with Faiss on one thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import faiss
import numpy as np

from engine.codes import check_bits
from engine.errors import IndexMismatchError

log = logging.getLogger(__name__)

FAISS_THREADS = 1
faiss.omp_set_num_threads(FAISS_THREADS)


@dataclass(frozen=True)
class Matches:
    """Search results: one row per query; rows are shorter than k when the index is."""

    ids: np.ndarray  # int64 (nq, k')
    distances: np.ndarray  # int32 (nq, k')


class BinaryIndex:
    """Exact Hamming search over packed ``bits``-bit codes stored under the catalog's photo ids,
    for the model ``model_id``; ``search`` orders ties by id."""

    def __init__(self, bits: int, model_id: str) -> None:
        self.bits = check_bits(bits)
        self.model_id = model_id
        flat = faiss.IndexBinaryFlat(bits)
        flat.use_heap = False  # counting by distance: 2.7 -> 1.4 ms for a 2000-code shortlist
        self._index = faiss.IndexBinaryIDMap2(flat)
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _check_codes(self, codes: np.ndarray) -> np.ndarray:
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.ndim != 2 or codes.shape[1] != self.bits // 8:
            raise IndexMismatchError(
                f"Codes of shape {codes.shape} do not fit a {self.bits}-bit index "
                f"(expected (n, {self.bits // 8}))."
            )
        return codes

    def add(self, ids: np.ndarray, codes: np.ndarray) -> None:
        """Add codes under ``ids``; an id already present is replaced."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        codes = self._check_codes(codes)
        if len(ids) != len(codes):
            raise ValueError(f"{len(ids)} ids for {len(codes)} codes.")
        if not len(ids):
            return
        with self._lock:
            self._index.remove_ids(ids)
            self._index.add_with_ids(codes, ids)

    def search(self, codes: np.ndarray, k: int) -> Matches:
        """The k nearest codes by Hamming distance for each query, ties broken by id."""
        codes = self._check_codes(codes)
        nq = len(codes)
        with self._lock:
            n = len(self)
            k = max(0, min(int(k), n))
            if k == 0 or nq == 0:
                return Matches(np.empty((nq, 0), np.int64), np.empty((nq, 0), np.int32))
            fetch = min(n, max(2 * k, k + 16))
            dist, ids = self._index.search(codes, fetch)
            rows_d, rows_i = [], []
            for q in range(nq):
                d, i = dist[q], ids[q]
                keep = i >= 0
                d, i = d[keep], i[keep]
                if fetch < n and len(d) and d[k - 1] == d[-1]:
                    d, i = self._all_within(codes[q : q + 1], int(d[k - 1]))
                order = np.lexsort((i, d))[:k]
                rows_d.append(d[order])
                rows_i.append(i[order])
        return Matches(np.stack(rows_i).astype(np.int64), np.stack(rows_d).astype(np.int32))

    def _all_within(self, query: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Every code at distance <= radius (Faiss's range search is exclusive of its radius)."""
        lims, d, i = self._index.range_search(query, radius + 1)
        return d[lims[0] : lims[1]], i[lims[0] : lims[1]]

    def ids(self) -> np.ndarray:
        """The ids held."""
        with self._lock:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
