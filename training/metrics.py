"""Retrieval metrics on rankings, and what a random ranking would score.

Every metric takes ``relevance``: a boolean (nq, n) array, row q being query q's ranked gallery
(column 0 the best match), and ``n_relevant`` (nq,) the number of relevant items in the whole
gallery for each query (the ranking may be cut short; the count must not be).

Definitions (the papers' category-level and fine-grained protocols):
- AP over all results, non-interpolated: mean over the relevant items of precision at their rank;
  a relevant item absent from the ranking counts as precision 0.
- AP@K: the same sum over the top K, divided by min(K, n_relevant) (so a perfect top K scores 1).
- P@K: relevant items in the top K divided by K.
- acc@K: 1 if any relevant item is in the top K (fine-grained: the one true photo).
Queries with no relevant item in the gallery are skipped by the callers (their AP is undefined).

``expected_*`` give the exact expectation of each metric under a uniformly random ranking of an
n-item gallery with R relevant items, so a report can say how far a figure is above chance.
"""

from __future__ import annotations

import math

import numpy as np


def _as_inputs(relevance: np.ndarray, n_relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rel = np.asarray(relevance, dtype=bool)
    if rel.ndim != 2:
        raise ValueError(f"relevance must be (queries, ranked items), got shape {rel.shape}.")
    count = np.asarray(n_relevant, dtype=np.int64)
    if count.shape != (rel.shape[0],):
        raise ValueError(f"n_relevant must have one entry per query, got shape {count.shape}.")
    if np.any(count < 1):
        raise ValueError("Every query needs at least one relevant item in the gallery.")
    return rel, count


def average_precision(relevance: np.ndarray, n_relevant: np.ndarray, k: int | None = None):
    """Per-query AP (k=None: over all results) or AP@k normalised by min(k, n_relevant)."""
    rel, count = _as_inputs(relevance, n_relevant)
    if k is not None:
        rel = rel[:, :k]
    hits = np.cumsum(rel, axis=1)
    ranks = np.arange(1, rel.shape[1] + 1)
    precision_sum = np.sum(np.where(rel, hits / ranks, 0.0), axis=1)
    denominator = count if k is None else np.minimum(count, k)
    return precision_sum / denominator


def mean_average_precision(relevance, n_relevant, k: int | None = None) -> float:
    return float(np.mean(average_precision(relevance, n_relevant, k)))


def precision_at_k(relevance: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    rel, _ = _as_inputs(relevance, n_relevant)
    return float(np.mean(rel[:, :k].sum(axis=1) / k))


def accuracy_at_k(relevance: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    rel, _ = _as_inputs(relevance, n_relevant)
    return float(np.mean(rel[:, :k].any(axis=1)))


# ---------------------------------------------------------------------- random expectations
def _harmonic(n: int) -> float:
    return float(np.sum(1.0 / np.arange(1, n + 1))) if n > 0 else 0.0


def expected_average_precision(n: int, r: int, k: int | None = None) -> float:
    """E[AP] (or E[AP@k]) of a uniformly random ranking of n items, r of them relevant.

    With rel_i the relevance at rank i: E[rel_i * hits_i] = r/n + (i-1) r(r-1) / (n(n-1)), so
    E[sum_{i<=k} rel_i hits_i / i] = H_k r/n + (k - H_k) r(r-1) / (n(n-1)), divided by r
    (or by min(r, k) for AP@k).
    """
    if not 1 <= r <= n:
        raise ValueError(f"Need 1 <= relevant ({r}) <= gallery size ({n}).")
    kk = n if k is None else min(k, n)
    h = _harmonic(kk)
    pair = (kk - h) * r * (r - 1) / (n * (n - 1)) if n > 1 else 0.0
    denominator = r if k is None else min(r, k)
    return (h * r / n + pair) / denominator


def expected_map(n: int, n_relevant: np.ndarray, k: int | None = None) -> float:
    """Mean of E[AP] (or E[AP@k]) over queries with the given relevant counts."""
    values = [expected_average_precision(n, int(r), k) for r in np.asarray(n_relevant)]
    return float(np.mean(values))


def expected_precision_at_k(n: int, n_relevant: np.ndarray, k: int) -> float:
    """E[P@k]: r/n of the min(k, n) ranked items are relevant on average, divided by k."""
    r = np.asarray(n_relevant, dtype=np.float64)
    return float(np.mean(r * min(k, n) / (n * k)))


def expected_accuracy_at_k(n: int, n_relevant: np.ndarray, k: int) -> float:
    """E[acc@k] = 1 - C(n-r, k) / C(n, k): the chance that some relevant item lands in the top k."""
    values = []
    for r in np.asarray(n_relevant, dtype=np.int64):
        kk = min(k, n)
        miss = math.comb(n - int(r), kk) / math.comb(n, kk) if n - r >= kk else 0.0
        values.append(1.0 - miss)
    return float(np.mean(values))


def random_map_spread(
    relevant_mask: np.ndarray, trials: int = 200, seed: int = 0, k: int | None = None
) -> tuple[float, float]:
    """Mean and standard deviation of mAP over ``trials`` random rankings (Monte Carlo).

    ``relevant_mask`` is the unranked (nq, n) relevance of every gallery item to every query;
    each trial ranks the gallery by an independent random permutation per query.
    """
    mask = np.asarray(relevant_mask, dtype=bool)
    count = mask.sum(axis=1)
    rng = np.random.default_rng(seed)
    values = np.empty(trials)
    for t in range(trials):
        order = np.argsort(rng.random(mask.shape), axis=1)
        values[t] = mean_average_precision(np.take_along_axis(mask, order, axis=1), count, k)
    return float(values.mean()), float(values.std(ddof=1)) if trials > 1 else 0.0
