import numpy as np
import pytest

from engine.codes import SUPPORTED_BITS, hamming_reference
from engine.errors import IndexMismatchError
from engine.index import BinaryIndex


def _ranked_reference(query, codes, ids, k):
    dist = hamming_reference(query[None], codes)[0]
    order = np.lexsort((ids, dist))[:k]
    return ids[order], dist[order]


@pytest.mark.parametrize("bits", SUPPORTED_BITS)
@pytest.mark.parametrize("k", [1, 40, 1000])
def test_search_matches_reference_with_ties_broken_by_id(bits, k):
    rng = np.random.default_rng(bits)
    n = 3000
    codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    if bits <= 32:  # short codes: many exact ties, as a real library's 16-bit codes have
        codes[rng.random(n) < 0.3] = codes[0]
    ids = rng.permutation(10 * n)[:n].astype(np.int64)  # sparse, unordered ids
    index = BinaryIndex(bits, "m")
    index.add(ids, codes)
    moved = rng.choice(n, 200, replace=False)  # re-added: stored after the rest, ids unchanged
    index.add(ids[moved], codes[moved])
    queries = codes[:5]
    matches = index.search(queries, k)
    for q in range(5):
        ref_ids, ref_d = _ranked_reference(queries[q], codes, ids, k)
        np.testing.assert_array_equal(matches.ids[q], ref_ids)
        np.testing.assert_array_equal(matches.distances[q], ref_d)


def test_ties_past_the_fetched_window_still_ordered_by_id():
    # 16 bits, many identical codes: the k-th distance is shared by far more than 2k codes
    codes = np.zeros((500, 2), dtype=np.uint8)
    codes[::2, 0] = 1  # half at distance 1 from the zero query
    ids = np.arange(500, dtype=np.int64)[::-1].copy()
    index = BinaryIndex(16, "m")
    index.add(ids, codes)
    m = index.search(np.zeros((1, 2), np.uint8), 300)
    ref_ids, ref_d = _ranked_reference(np.zeros(2, np.uint8), codes, ids, 300)
    np.testing.assert_array_equal(m.ids[0], ref_ids)
    np.testing.assert_array_equal(m.distances[0], ref_d)


def test_add_replaces_and_short_results():
    index = BinaryIndex(32, "m")
    index.add(np.array([1, 3]), np.array([[0, 0, 0, 0], [1, 0, 0, 0]], np.uint8))
    index.add(np.array([3]), np.array([[255] * 4], np.uint8))  # replaces id 3
    assert len(index) == 2
    m = index.search(np.zeros((1, 4), np.uint8), 10)
    assert m.ids.tolist() == [[1, 3]]  # only two codes; no -1 placeholders
    assert m.distances.tolist() == [[0, 32]]


def test_wrong_code_width_is_refused():
    index = BinaryIndex(64, "m")
    with pytest.raises(IndexMismatchError, match="64-bit"):
        index.add(np.array([1]), np.zeros((1, 16), np.uint8))
