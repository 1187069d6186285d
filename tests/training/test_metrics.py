"""Each metric against a naive loop on hand-made rankings, and the random expectations against
Monte Carlo simulation."""

import numpy as np
import pytest

from training import metrics as M


def naive_ap(ranked: list[int], n_relevant: int, k: int | None = None) -> float:
    hits, total = 0, 0.0
    for i, rel in enumerate(ranked[:k] if k else ranked, start=1):
        if rel:
            hits += 1
            total += hits / i
    return total / (min(k, n_relevant) if k else n_relevant)


RANKINGS = [  # (ranked relevance, relevant in the whole gallery)
    ([1, 0, 1, 0, 0, 1], 3),
    ([0, 0, 0, 1, 1, 0], 2),
    ([1, 1, 1, 0, 0, 0], 3),
    ([0, 1, 0, 0, 0, 0], 4),  # three relevant items missing from the ranking
    ([0, 0, 0, 0, 0, 1], 1),
]


def test_hand_made_ap_values():
    # [1,0,1,0,0,1]: (1/1 + 2/3 + 3/6) / 3
    assert M.average_precision(np.array([[1, 0, 1, 0, 0, 1]]), np.array([3]))[0] == pytest.approx(
        (1 + 2 / 3 + 0.5) / 3
    )
    # a relevant item missing from the ranking counts as precision 0
    assert M.average_precision(np.array([[0, 1, 0]]), np.array([4]))[0] == pytest.approx(0.5 / 4)


@pytest.mark.parametrize("k", [None, 1, 2, 4, 10])
def test_map_matches_naive(k):
    rel = np.array([r for r, _ in RANKINGS], dtype=bool)
    count = np.array([n for _, n in RANKINGS])
    expected = np.mean([naive_ap(r, n, k) for r, n in RANKINGS])
    assert M.mean_average_precision(rel, count, k) == pytest.approx(expected)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_precision_and_accuracy_match_naive(k):
    rel = np.array([r for r, _ in RANKINGS], dtype=bool)
    count = np.array([n for _, n in RANKINGS])
    assert M.precision_at_k(rel, count, k) == pytest.approx(
        np.mean([sum(r[:k]) / k for r, _ in RANKINGS])
    )
    assert M.accuracy_at_k(rel, count, k) == pytest.approx(
        np.mean([any(r[:k]) for r, _ in RANKINGS])
    )


def test_rejects_query_without_relevant_item():
    with pytest.raises(ValueError, match="relevant"):
        M.average_precision(np.zeros((1, 3), bool), np.array([0]))


@pytest.mark.parametrize(
    ("n", "r", "k"), [(10, 1, None), (10, 3, None), (30, 7, 5), (12, 12, None), (25, 4, 200)]
)
def test_expected_ap_matches_simulation(n, r, k):
    rng = np.random.default_rng(0)
    trials = 20000
    mask = np.zeros((trials, n), bool)
    mask[:, :r] = True
    ranked = np.take_along_axis(mask, np.argsort(rng.random((trials, n)), axis=1), axis=1)
    simulated = M.mean_average_precision(ranked, np.full(trials, r), k)
    assert M.expected_average_precision(n, r, k) == pytest.approx(simulated, abs=0.01)
    kk = 3
    assert M.expected_precision_at_k(n, np.array([r]), kk) == pytest.approx(
        M.precision_at_k(ranked, np.full(trials, r), kk), abs=0.01
    )
    assert M.expected_accuracy_at_k(n, np.array([r]), kk) == pytest.approx(
        M.accuracy_at_k(ranked, np.full(trials, r), kk), abs=0.01
    )


def test_perfect_ranking_scores_one():
    rel = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    assert M.mean_average_precision(rel, np.array([2, 1])) == 1.0
    assert M.mean_average_precision(rel, np.array([2, 1]), k=1) == 1.0


def test_random_map_spread_agrees_with_expectation():
    mask = np.zeros((20, 40), bool)
    mask[:, :5] = True
    mean, std = M.random_map_spread(mask, trials=300, seed=1)
    assert mean == pytest.approx(M.expected_map(40, np.full(20, 5)), abs=0.01)
    assert 0 < std < 0.1
