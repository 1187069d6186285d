"""Re-ranking figures (``sketch-search evaluate --rerank``): extra figures of ``evaluate``.

For a model that re-ranks (``model.rerank_features``: DSSA), measured on the evaluation's own
queries, gallery and binary ranking (``training.evaluate.ExtraFigures``): the top ``shortlist``
photos of the Hamming ranking are re-ordered by ``engine.searcher.rerank_shortlist``, the
searcher's own re-ranking, with the query's float32 feature (as the app's query) and the photos'
features stored as float16 (as the catalog keeps them); the rest keeps its Hamming order. Which
photos at the shortlist's last distance make the cut is a matter of tie order, so the figures
are the expectation over every order of tied photos (``training.metrics.
tie_aware_shortlist_accuracy``); ``file_order`` keeps those of the order a user's search gives
(equal distances by photo id). ``holef_exhaustive`` ranks the whole gallery by the exact
distance (the paper's real-valued protocol for DSSA).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from engine.errors import ConfigError
from engine.models import SketchHashModel, model_id
from engine.searcher import rerank_shortlist
from training.evaluate import (
    EvalProgress,
    EvalSet,
    ExtraFigures,
    embed_gallery,
    embed_in_batches,
    ranked_figures,
    ranking_metrics,
)
from training.metrics import tie_aware_shortlist_accuracy

DEFAULT_SHORTLISTS = (10, 20, 50, 100)


def reranking_figures(
    shortlists: Sequence[int] = DEFAULT_SHORTLISTS, batch_size: int = 64
) -> ExtraFigures:
    """The ``evaluate`` hook measuring re-ranking of each shortlist length: acc@1/acc@10 of the
    binary ranking, of it re-ranked, and of the exhaustive ranking by the exact distance."""
    if not shortlists or min(shortlists) < 1:
        raise ConfigError("Re-ranking shortlist lengths must be at least 1.")

    def measure(
        model: SketchHashModel, ev: EvalSet, found: Any, cancel: threading.Event
    ) -> Generator[EvalProgress, None, dict[str, Any]]:
        if not model.rerank_features:
            raise ConfigError(f"A {model.method} model has no exact distance to re-rank by.")
        q = yield from embed_in_batches(
            model.sketch_features, ev.sketches, batch_size, "sketch features", cancel
        )
        g = yield from embed_gallery(model.photo_features, ev, batch_size, cancel)
        g = g.astype(np.float16)  # as the catalog stores them
        relevant, n_relevant, layout = ev.relevant, ev.n_relevant, ev.layout
        ranked = found.ids
        exact = model.feature_distances(q, g)  # (nq, n) by photo id
        exact_ranked = np.take_along_axis(exact, ranked, axis=1)
        rel_ranked = np.take_along_axis(relevant, ranked, axis=1)
        binary, binary_file_order = ranked_figures(
            relevant, ranked, found.distances, n_relevant, layout
        )
        report: dict[str, Any] = {"binary": binary}
        file_order: dict[str, Any] = {"binary": binary_file_order}
        for top in shortlists:
            top = min(int(top), ranked.shape[1])
            rel = np.take_along_axis(relevant, reranked_ids(model, q, g, ranked, top), axis=1)
            file_order[f"reranked_top{top}"] = ranking_metrics(rel, n_relevant, layout)[0]
            report[f"reranked_top{top}"] = {
                f"acc_{k}": tie_aware_shortlist_accuracy(
                    rel_ranked, found.distances, exact_ranked, top, k
                )
                for k in (1, 10)
            }
        exhaustive = np.argsort(exact, axis=1, kind="stable")
        report["holef_exhaustive"], file_order["holef_exhaustive"] = ranked_figures(
            relevant, exhaustive, np.take_along_axis(exact, exhaustive, axis=1), n_relevant, layout
        )
        report["file_order"] = file_order
        report["protocol"] = {
            "data": str(ev.dataset.root),
            "queries": len(ev.sketches),
            "gallery": len(ev.photos),
            "edges": "released" if ev.edges is not None else "engine",
            "features": f"{g.shape[1]}-d float16",
            "distance": _distance_name(model),
            "reranking": "engine.searcher.rerank_shortlist, as a re-ranked search",
            "ties": "expected over every order of photos at equal distance; "
            "file_order: by photo id",
            "model_id": model_id(model),
        }
        return report

    return measure


def reranked_ids(
    model: SketchHashModel, queries: np.ndarray, gallery: np.ndarray, ranked: np.ndarray, top: int
) -> np.ndarray:
    """The rankings ``ranked`` (nq, n) with each row's first ``top`` ids re-ranked as the
    searcher re-ranks a query's shortlist (``engine.searcher.rerank_shortlist``), from the
    queries' (nq, D) and the gallery's (n, D) features; the rest unchanged."""
    ids = ranked.copy()
    for row in range(len(ids)):
        order, _ = rerank_shortlist(model, queries[row : row + 1], gallery[ranked[row, :top]])
        ids[row, :top] = ranked[row, :top][order]
    return ids


def _distance_name(model: SketchHashModel) -> str:
    if getattr(model, "holef_weight", None) is not None:
        name = "HOLEF"
    else:
        name = "squared Euclidean" if model.method == "dssa" else f"{model.method}'s exact distance"
    if getattr(model, "hog_fit", None) is not None:
        name += (
            f" + {model.config.hog_weight:g} x HOG cosine distance, each over its training spread"
        )
    return name
