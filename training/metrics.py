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

``tie_aware_*`` give the exact expectation of each metric over every order of the items that tie
(equal distance), the other items staying where they are: with short binary codes many photos
share a Hamming distance, and the order a tie rule (photo id, file order) gives them would
otherwise decide the figure. Closed forms (McSherry & Najork, "Computing information retrieval
performance measures efficiently in the presence of tied scores", ECIR 2008): rank i lies in a
tie group of t items with r relevant, after b items with R_b relevant; each order of the group
is equally likely, so rank i holds a relevant item with probability r/t, and given that, the
hits up to it are R_b + 1 + (j - 1)(r - 1)/(t - 1) on average (j = i - b its place in the group).
- E[P@K] = sum_{i<=K} r/t / K;
- E[AP] = sum_i (r/t) (R_b + 1 + (j - 1)(r - 1)/(t - 1)) / i / R (AP@K: i <= K, / min(R, K));
- E[acc@K]: 1 if a relevant item ranks before the group that holds rank K, else the chance that
  the m = K - b places of that group taken by the top K hold one of its r relevant items:
  1 - C(t - r, m) / C(t, m) (one relevant photo: clamp((K - b)/t, 0, 1)).
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


# ---------------------------------------------------------------------- ties: expected over orders
def tie_groups(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, size) of the tie group of every rank: rows of ``distances`` (nq, n) sorted
    ascending, ties being equal values. start is 0-based: the group holds ranks start+1 ..
    start+size (1-based)."""
    dist = np.asarray(distances)
    if dist.ndim != 2:
        raise ValueError(f"distances must be (queries, ranked items), got shape {dist.shape}.")
    nq, n = dist.shape
    if n and np.any(np.diff(dist, axis=1) < 0):
        raise ValueError("distances must be sorted ascending along each row (the ranking).")
    cols = np.broadcast_to(np.arange(n), (nq, n))
    new = np.ones((nq, n), bool)
    new[:, 1:] = dist[:, 1:] != dist[:, :-1]
    last = np.ones((nq, n), bool)
    last[:, :-1] = new[:, 1:]
    start = np.maximum.accumulate(np.where(new, cols, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, cols, n)[:, ::-1], axis=1)[:, ::-1]
    return start, end - start + 1


def _tie_inputs(relevance, distances, n_relevant):
    rel, count = _as_inputs(relevance, n_relevant)
    dist = np.asarray(distances)
    if dist.shape != rel.shape:
        raise ValueError(f"distances {dist.shape} must match relevance {rel.shape}.")
    start, size = tie_groups(dist)
    hits = np.cumsum(rel, axis=1)
    before = np.take_along_axis(hits - rel, start, axis=1)  # R_b: relevant before the group
    group_rel = np.take_along_axis(hits, start + size - 1, axis=1) - before  # r of the group
    return rel, count, start, size, before, group_rel


def _expected_precision_terms(relevance, distances, n_relevant):
    """Per rank i: E[rel_i] (r/t) and E[rel_i * hits_i / i], over the orders of the ties."""
    rel, count, start, size, before, r = _tie_inputs(relevance, distances, n_relevant)
    ranks = np.arange(1, rel.shape[1] + 1)
    place = ranks - start  # j: 1-based place in the group
    p_rel = r / size
    others = np.where(size > 1, (place - 1) * (r - 1) / np.maximum(size - 1, 1), 0.0)
    return count, p_rel, p_rel * (before + 1 + others) / ranks


def tie_aware_average_precision(relevance, distances, n_relevant, k: int | None = None):
    """Per-query E[AP] (or E[AP@k]) over the orders of tied items; ``distances`` (nq, n) is the
    ranked rows' distances (ascending), ``relevance`` ranked the same way."""
    count, _, terms = _expected_precision_terms(relevance, distances, n_relevant)
    if k is not None:
        terms = terms[:, :k]
    return terms.sum(axis=1) / (count if k is None else np.minimum(count, k))


def tie_aware_map(relevance, distances, n_relevant, k: int | None = None) -> float:
    return float(np.mean(tie_aware_average_precision(relevance, distances, n_relevant, k)))


def tie_aware_precision_at_k(relevance, distances, n_relevant, k: int) -> float:
    """E[P@k] over the orders of tied items."""
    _, p_rel, _ = _expected_precision_terms(relevance, distances, n_relevant)
    return float(np.mean(p_rel[:, :k].sum(axis=1) / k))


def tie_aware_accuracy_at_k(relevance, distances, n_relevant, k: int) -> float:
    """E[acc@k] over the orders of tied items (the chance a relevant item is in the top k)."""
    rel, _, start, size, before, r = _tie_inputs(relevance, distances, n_relevant)
    kk = min(k, rel.shape[1])
    if kk < 1:
        return 0.0
    values = []
    for b, t, rb, rg in zip(
        start[:, kk - 1], size[:, kk - 1], before[:, kk - 1], r[:, kk - 1], strict=True
    ):
        m = kk - int(b)  # places of the boundary group inside the top k
        if rb > 0:
            values.append(1.0)
        elif rg == 1:  # one relevant item in the group: (k - b) / t, as written
            values.append(m / int(t))
        else:
            values.append(1.0 - math.comb(int(t - rg), m) / math.comb(int(t), m))
    return float(np.mean(values))


def tie_aware_shortlist_accuracy(relevance, distances, exact, shortlist: int, k: int) -> float:
    """E[acc@k] of a re-ranked shortlist over every order of tied items, one relevant item a query.

    The ranking (``relevance``, ascending ``distances``: (nq, n), the Hamming ranking) is cut
    after ``shortlist`` items, the cut re-ordered by ``exact`` (nq, n: each ranked item's exact
    distance), the rest left in Hamming order. Ties decide which of the items at the cut's
    distance enter it (m of its t, a uniformly random subset) and the order of exact ties and of
    the rest, so: an item before the cut's tie group is in the cut, and its place there is
    1 + (items surely in, exactly nearer) + L + a uniform share of its exact ties, L (and the
    exact ties E) drawn from the cut's group hypergeometrically; an item of that group is in it
    with chance m/t (then as before, with m - 1 of the other t - 1), else after the cut among the
    t - m left; an item after the group keeps its Hamming tie group (b, t): clamp((k - b)/t).
    """
    rel = np.asarray(relevance, dtype=bool)
    if np.any(rel.sum(axis=1) != 1):
        raise ValueError("The shortlist expectation needs exactly one relevant item a query.")
    dist, exact = np.asarray(distances), np.asarray(exact)
    start, size = tie_groups(dist)
    n = rel.shape[1]
    cut = max(1, min(shortlist, n))
    values = []
    for q in range(rel.shape[0]):
        x = int(np.argmax(rel[q]))
        a, t = int(start[q, cut - 1]), int(size[q, cut - 1])  # the cut's tie group
        m = cut - a
        if x >= a + t:  # after the cut's group: its own Hamming tie group decides
            b, tx = int(start[q, x]), int(size[q, x])
            values.append(min(max((k - b) / tx, 0.0), 1.0))
            continue
        h = exact[q, x]
        sure, group = np.arange(a) != x, np.arange(a, a + t) != x
        s_lt = int(np.sum(exact[q, :a][sure] < h))
        s_eq = int(np.sum(exact[q, :a][sure] == h))
        c_lt = int(np.sum(exact[q, a : a + t][group] < h))
        c_eq = int(np.sum(exact[q, a : a + t][group] == h))
        if x < a:
            values.append(_placed_in_cut(k, s_lt, s_eq, c_lt, c_eq, t, m))
            continue
        inside = _placed_in_cut(k, s_lt, s_eq, c_lt, c_eq, t - 1, m - 1)
        outside = min(max((k - cut) / (t - m), 0.0), 1.0) if t > m else 0.0
        values.append(m / t * inside + (t - m) / t * outside)
    return float(np.mean(values))


def _placed_in_cut(k: int, s_lt: int, s_eq: int, c_lt: int, c_eq: int, pool: int, take: int):
    """P(place <= k) of an item in the cut: ``take`` of ``pool`` group items join it, c_lt of
    them exactly nearer and c_eq exactly as near; s_lt / s_eq of those surely in."""
    rest = pool - c_lt - c_eq
    total = math.comb(pool, take)
    p = 0.0
    for lt in range(min(c_lt, take) + 1):
        for eq in range(min(c_eq, take - lt) + 1):
            ways = math.comb(c_lt, lt) * math.comb(c_eq, eq) * math.comb(rest, take - lt - eq)
            if ways:
                before, ties = s_lt + lt, s_eq + eq + 1
                p += ways / total * min(max((k - before) / ties, 0.0), 1.0)
    return p


def distinct_codes(codes: np.ndarray) -> int:
    """How many different rows (codes) ``codes`` (n, bytes) holds."""
    codes = np.ascontiguousarray(codes)
    return len(np.unique(codes.reshape(len(codes), -1), axis=0)) if len(codes) else 0


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
