"""Tie-aware figures (training.metrics.tie_aware_*): the closed forms against brute force, the
mean over every order of the tied items, on hand-made tied distances; and the evaluator's
headline figures are those expectations whatever the photo order."""

import itertools
import math

import numpy as np
import pytest

from tests.training.test_metrics import naive_ap
from training import metrics as M
from training.data import FINE_GRAINED
from training.evaluate import ranking_metrics

# (distances of the ranked items, relevance, relevant in the whole gallery)
CASES = [
    ([0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], 1),  # one code for every photo
    ([1, 2, 2, 2, 5, 5, 7], [0, 0, 0, 1, 0, 0, 0], 1),  # the true photo in a tie of 3
    ([0, 0, 3, 3, 3, 3, 4], [1, 0, 0, 1, 1, 0, 1], 4),
    ([2, 2, 2, 2, 2, 6, 6], [0, 1, 1, 0, 0, 1, 0], 3),
    ([0, 1, 2, 3, 4], [0, 1, 0, 1, 0], 2),  # no ties: the plain figures
    ([4, 4, 4, 9, 9, 9, 9], [0, 0, 0, 0, 0, 0, 1], 2),  # one relevant item beyond the ranking
]


def _orders(distances):
    """Every ranking that reorders items only within their tie groups (as index arrays)."""
    groups = [list(g) for _, g in itertools.groupby(range(len(distances)), distances.__getitem__)]
    for parts in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [i for part in parts for i in part]


def _brute_force(distances, relevance, n_relevant, figure):
    values = [figure([relevance[i] for i in order], n_relevant) for order in _orders(distances)]
    return float(np.mean(values))


def _one(distances, relevance, n_relevant):
    return np.array([distances]), np.array([relevance], bool), np.array([n_relevant])


@pytest.mark.parametrize(("distances", "relevance", "n_relevant"), CASES)
@pytest.mark.parametrize("k", [None, 1, 2, 3, 5, 10])
def test_expected_ap_equals_the_mean_over_all_tie_orders(distances, relevance, n_relevant, k):
    dist, rel, count = _one(distances, relevance, n_relevant)
    brute = _brute_force(distances, relevance, n_relevant, lambda r, n: naive_ap(r, n, k))
    assert M.tie_aware_average_precision(rel, dist, count, k)[0] == pytest.approx(brute)


@pytest.mark.parametrize(("distances", "relevance", "n_relevant"), CASES)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 6, 10])
def test_expected_precision_and_accuracy_equal_the_mean_over_all_tie_orders(
    distances, relevance, n_relevant, k
):
    dist, rel, count = _one(distances, relevance, n_relevant)
    precision = _brute_force(distances, relevance, n_relevant, lambda r, n: sum(r[:k]) / k)
    accuracy = _brute_force(distances, relevance, n_relevant, lambda r, n: float(any(r[:k])))
    assert M.tie_aware_precision_at_k(rel, dist, count, k) == pytest.approx(precision)
    assert M.tie_aware_accuracy_at_k(rel, dist, count, k) == pytest.approx(accuracy)


def test_one_true_photo_in_a_tie_is_clamped_k_minus_b_over_t():
    # the true photo ties with 4 others at ranks 3..7 (b = 2, t = 5)
    dist, rel, count = _one([0, 1, 3, 3, 3, 3, 3, 8], [0, 0, 0, 0, 1, 0, 0, 0], 1)
    for k in range(1, 9):
        want = min(max((k - 2) / 5, 0.0), 1.0)
        assert M.tie_aware_accuracy_at_k(rel, dist, count, k) == pytest.approx(want)


def test_several_queries_average_and_ties_without_relevant_items_change_nothing():
    rows = [CASES[1], CASES[2], CASES[4]]
    dist = np.array([d + [99] * (7 - len(d)) for d, _, _ in rows])
    rel = np.array([r + [0] * (7 - len(r)) for _, r, _ in rows], bool)
    count = np.array([n for _, _, n in rows])
    per_query = M.tie_aware_average_precision(rel, dist, count)
    for q, (d, r, n) in enumerate(rows):
        padded = d + [99] * (7 - len(d)), r + [0] * (7 - len(r))
        brute = _brute_force(padded[0], padded[1], n, lambda x, c: naive_ap(x, c))
        assert per_query[q] == pytest.approx(brute)
    assert M.tie_aware_map(rel, dist, count) == pytest.approx(per_query.mean())


def test_tie_groups_and_input_checks():
    start, size = M.tie_groups(np.array([[0, 0, 1, 2, 2, 2]]))
    assert start.tolist() == [[0, 0, 2, 3, 3, 3]] and size.tolist() == [[2, 2, 1, 3, 3, 3]]
    with pytest.raises(ValueError, match="sorted ascending"):
        M.tie_groups(np.array([[1, 0]]))
    with pytest.raises(ValueError, match="must match"):
        M.tie_aware_map(np.ones((1, 3), bool), np.zeros((1, 2)), np.array([1]))


def test_distinct_codes():
    codes = np.array([[1, 2], [1, 2], [0, 2], [1, 3]], np.uint8)
    assert M.distinct_codes(codes) == 3 and M.distinct_codes(codes[:0]) == 0


def test_ranking_metrics_headline_is_the_expectation_whatever_the_tie_order():
    """Two photo orders of the same tied gallery: different file-order figures, one headline."""
    dist = np.array([[0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]])
    first = np.array([[1] + [0] * 11], bool)  # the true photo first among its 4 ties
    last = np.array([[0, 0, 0, 1] + [0] * 8], bool)  # ... or last
    count = np.array([1])
    a, _ = ranking_metrics(first, count, FINE_GRAINED, distances=dist)
    b, _ = ranking_metrics(last, count, FINE_GRAINED, distances=dist)
    assert a == b and a["acc_1"] == pytest.approx(1 / 4) and a["acc_10"] == 1.0
    plain, _ = ranking_metrics(first, count, FINE_GRAINED)  # no distances: the order as given
    assert plain["acc_1"] == 1.0
    assert math.isclose(M.accuracy_at_k(last, count, 1), 0.0)


# (Hamming distances of the ranked items, exact distances, index of the one relevant item)
SHORTLIST_CASES = [
    ([1, 1, 1, 1, 1, 1], [0.5, 0.1, 0.9, 0.3, 0.2, 0.7], 3),  # one code: the cut is random
    ([0, 2, 2, 2, 2, 5, 5], [0.4, 0.3, 0.8, 0.1, 0.6, 0.2, 0.5], 2),  # true photo at the cut
    ([0, 2, 2, 2, 2, 5, 5], [0.4, 0.3, 0.8, 0.1, 0.6, 0.2, 0.5], 0),  # before the cut's group
    ([0, 2, 2, 2, 2, 5, 5], [0.4, 0.3, 0.8, 0.1, 0.6, 0.2, 0.5], 6),  # after it
    ([0, 0, 3, 3, 3, 4], [0.2, 0.5, 0.5, 0.1, 0.5, 0.0], 1),  # exact ties too
]


def _mean_over_reranked_orders(hamming, exact, cut, figure):
    """The mean of ``figure`` over every ranking the shortlist re-rank can give: each order of
    the Hamming ties equally likely, then each order of the exact ties inside the cut."""
    means = []
    for order in _orders(hamming):
        head, tail = order[:cut], order[cut:]
        by_exact = sorted(head, key=exact.__getitem__)
        inner = [
            figure([by_exact[i] for i in head_order] + tail)
            for head_order in _orders([exact[i] for i in by_exact])
        ]
        means.append(np.mean(inner))
    return float(np.mean(means))


@pytest.mark.parametrize(("hamming", "exact", "true"), SHORTLIST_CASES)
@pytest.mark.parametrize("cut", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_expected_reranked_accuracy_equals_the_mean_over_all_tie_orders(
    hamming, exact, true, cut, k
):
    brute = _mean_over_reranked_orders(hamming, exact, cut, lambda order: true in order[:k])
    rel = np.zeros((1, len(hamming)), bool)
    rel[0, true] = True
    got = M.tie_aware_shortlist_accuracy(rel, np.array([hamming]), np.array([exact]), cut, k)
    assert got == pytest.approx(brute)


def test_reranking_the_whole_gallery_is_the_exact_ranking_with_its_ties():
    hamming, exact, true = SHORTLIST_CASES[4]
    rel = np.zeros((1, 6), bool)
    rel[0, true] = True
    order = np.argsort(exact, kind="stable")
    for k in (1, 2, 3):
        whole = M.tie_aware_shortlist_accuracy(rel, np.array([hamming]), np.array([exact]), 6, k)
        exhaustive = M.tie_aware_accuracy_at_k(
            rel[:, order], np.array([exact])[:, order], np.array([1]), k
        )
        assert whole == pytest.approx(exhaustive)
