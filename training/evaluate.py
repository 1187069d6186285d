"""Evaluation through the engine's own search path, with the figures a random ranking would get.

Protocol (stated in every report's ``protocol``):
- queries: each sketch as a search prepares it (``prepare_for_search``: the 256 px sketch of
  ``engine.sketch``, which the model resizes at its boundary); photos as the indexer does;
- ``protocol`` "standard": queries are the sketches of the split's photos (``split`` of
  ``split.json``; a folder without ``split.json`` is evaluated whole: every sketch a query,
  every photo in the gallery); "unseen20" (class-disjoint validation, category level): the 20
  classes of ``UNSEEN_VALIDATION_CLASSES`` only, with no split (a model trained with
  ``hold_out="unseen20"`` never saw them): all their sketches query all their photos;
- ``doodles`` (a QuickDraw folder, category level): the queries are QuickDraw drawings of the
  view's classes instead (``training.sources.doodle_sketches``: names matched as for training,
  at most ``doodles_per_class`` a class), rasterised through the engine's stroke path as canvas
  drawings are; the gallery is the view's photos of the classes that have drawings;
- gallery: the split's photos, plus every photo under ``extra_gallery`` (distractors, relevant
  to no query; a data set folder, with ``photos/`` and ``sketches/``, gives its ``photos/``
  only, all splits: e.g. ``chairs_v1`` beside ``shoes_v1``), numbered in that order (data set
  photos in sorted key order, then distractors in walk order): that number is the photo id;
- binary figures: ``encode_*`` -> packed codes -> ``engine.index.BinaryIndex`` (Faiss), the full
  ranking of the gallery for each query with its Hamming distances;
- ties: short codes make many photos share a distance (a collapsed model gives every photo one
  code), and the order of tied photos would decide the figures. The headline figures
  (``metrics``) are therefore the exact expectation over every order of the tied photos
  (``training.metrics.tie_aware_*``, closed forms); ``file_order`` keeps the figures of the order
  a user's search shows (equal distances by photo id), and ``codes`` the number of distinct codes
  in the gallery and the mean size of the tie holding each query's best relevant photo;
- asymmetric figures (``asymmetric``, category-level methods, ``model.asymmetric``): the photos
  ranked by the asymmetric distance to each sketch's unbinarised output (``engine.asymmetric``),
  as a search ranks them (its shortlist is the whole gallery here): against the photos' outputs
  as a library stores them (float16, ``model.photo_values``), and in ``codes_only`` against
  their codes alone (a library indexed before the outputs were stored);
- expanded figures (``expanded``, with ``expand`` m): as a search with ``expand=m`` ranks them:
  in the asymmetric space where the model ranks asymmetrically, else by the codes' majority vote;
- real-valued figures: cosine similarity of the ``embed_*`` outputs before binarisation (exact
  ties are expected over their orders too);
- category level: a hit is a photo of the query's class: mAP over all results, mAP@200, P@200;
  fine-grained: the sketch's own photo: acc@1, acc@10;
- ``random``: the exact expectation of each metric under a uniformly random ranking;
- ``baseline``: the classical HOG baseline (``training.classical``), evaluated the same way;
- ``edges`` (methods whose photo side reads edge maps): ``engine`` computes them with
  ``engine.edges`` (what users get); ``released`` reads the data set's ``edges/`` (the papers'
  protocol; no distractors then, as they have no released edge maps).

One sequence (``evaluation_set``: load, view, decode, relevance) feeds every figure; a method's
extra figures plug into it as ``evaluate(..., extras={name: hook})`` (``ExtraFigures``, e.g.
``training.reranking.reranking_figures``, ``training.methods.semi3.binarisation_figures``)
and are kept in ``EvalReport.extras`` (printed; ``store_metrics`` leaves them out).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.asymmetric import asymmetric_against_gallery
from engine.codes import pack_codes
from engine.defaults import DEFAULT_EXPAND
from engine.errors import Cancelled, ConfigError, ImageLoadError
from engine.expansion import expand_against_gallery
from engine.index import BinaryIndex
from engine.indexer import walk_photos
from engine.models import SketchHashModel, model_id
from engine.sketch import SKETCH_SIZE
from training import metrics as M
from training.arrays import (
    PreparedData,
    PrepareProgress,
    prepare_arrays,
    read_photo,
    released_edge_maps,
)
from training.data import CATEGORY, NAMED_CLASS_SETS, SketchDataset, class_key, load_dataset
from training.progress import relay
from training.sources import doodle_sketches, quickdraw_files

log = logging.getLogger(__name__)

EDGE_SOURCES = ("engine", "released")
STANDARD = "standard"
PROTOCOLS = (STANDARD, *NAMED_CLASS_SETS)
TIES = (
    "headline figures are the expectation over every order of photos at equal distance; "
    "file order (equal distances by photo id: data set photos in sorted order, then distractors) "
    "in file_order"
)


@dataclass(frozen=True)
class EvalConfig:
    """What one evaluation measures: the split, classes, protocol, query source, distractors, edge
    maps and which extra figures (real-valued, HOG baseline, query expansion)."""

    split: str | None = "test"
    extra_gallery: Path | None = None
    k: int = 200
    batch_size: int = 64
    real_valued: bool = True
    baseline: bool = True
    classes: tuple[str, ...] | None = None
    edges: str = "engine"  # edge-map methods: "engine" or "released" (the data set's edges/)
    protocol: str = STANDARD  # or a named class set ("unseen20"): those classes, no split
    doodles: Path | None = None  # a QuickDraw folder: its drawings are the queries
    doodles_per_class: int | None = None  # at most this many drawings a class (None: all)
    expand: int = DEFAULT_EXPAND  # also rank with query expansion over this many photos (0: no)
    asymmetric: bool = True  # rank as a search does: asymmetric where the model is (False: Hamming)

    def __post_init__(self) -> None:
        if self.expand < 0:
            raise ConfigError("expand must be 0 (off) or a number of photos.")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"Unknown protocol '{self.protocol}'; choose one of {PROTOCOLS}.")
        if self.protocol != STANDARD and self.classes:
            raise ConfigError(
                f"The {self.protocol} protocol chooses its own classes; leave out the classes."
            )
        if self.doodles_per_class is not None and self.doodles_per_class < 1:
            raise ConfigError("doodles_per_class must be at least 1 (or None for all).")
        if self.edges not in EDGE_SOURCES:
            raise ConfigError(f"Unknown edge maps '{self.edges}'; choose one of {EDGE_SOURCES}.")
        if self.edges == "released" and self.extra_gallery is not None:
            raise ConfigError(
                "Distractor photos have no released edge maps; evaluate them with edges 'engine'."
            )


@dataclass(frozen=True)
class EvalProgress:
    """Progress of an evaluation stage: ``done`` of ``total``."""

    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class EvalReport:
    """The figures of one evaluation (see the module docstring), and its ``protocol``."""

    metrics: dict[str, float]
    random: dict[str, float]
    real_valued: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    expanded: dict[str, float] = field(default_factory=dict)  # binary, with query expansion
    asymmetric: dict[str, float] = field(default_factory=dict)  # photo codes, unbinarised sketch
    file_order: dict[str, float] = field(default_factory=dict)  # binary, ties by photo id
    codes: dict[str, float] = field(default_factory=dict)  # distinct gallery codes, tie sizes
    codes_only: dict[str, dict] = field(default_factory=dict)  # asymmetric, expanded: codes alone
    extras: dict[str, dict] = field(default_factory=dict)  # a method's extra figures, by name

    @property
    def key(self) -> str | None:
        """Where ``store_metrics`` keeps these figures: None for the main (standard protocol,
        Sketchy sketches) figures, else the protocol's name ("unseen20", "doodles",
        "unseen20_doodles"; "extra_gallery" appended with distractors)."""
        return self.protocol.get("key")

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready dicts (empty parts left out), extras under their names."""
        out: dict[str, Any] = {"metrics": self.metrics, "random": self.random}
        if self.file_order:
            out["file_order"] = self.file_order
        if self.codes:
            out["codes"] = self.codes
        if self.real_valued:
            out["real_valued"] = self.real_valued
        if self.asymmetric:
            out["asymmetric"] = self.asymmetric
        if self.expanded:
            out["expanded"] = self.expanded
        if self.codes_only:
            out["codes_only"] = self.codes_only
        if self.baseline:
            out["baseline"] = self.baseline
        out["protocol"] = self.protocol
        out.update(self.extras)  # e.g. "reranking"
        return out


def ranking_metrics(
    ranked: np.ndarray,
    n_relevant: np.ndarray,
    layout: str,
    k: int = 200,
    distances: np.ndarray | None = None,
):
    """(figures, random expectations) of ranked relevance rows (nq, n) for the layout. Cut-off
    figures use k = min(k, n): P@200 of a 28-photo gallery would be at most 0.14 for any model
    (keys ``map_28``, ``p_28`` then). With ``distances`` (nq, n, ascending, the ranked items'
    distances) the figures are the expectation over every order of the tied items; without,
    those of the order given."""
    n = ranked.shape[1]
    k = max(1, min(k, n))
    if distances is None:  # the order given: each tie is a group of one
        distances = np.broadcast_to(np.arange(n), ranked.shape)
    if layout == CATEGORY:
        figures = {
            "map_all": M.tie_aware_map(ranked, distances, n_relevant),
            f"map_{k}": M.tie_aware_map(ranked, distances, n_relevant, k),
            f"p_{k}": M.tie_aware_precision_at_k(ranked, distances, n_relevant, k),
        }
    else:
        figures = {
            f"acc_{a}": M.tie_aware_accuracy_at_k(ranked, distances, n_relevant, a) for a in (1, 10)
        }
    return figures, random_figures(n, n_relevant, layout, k)


def random_figures(n: int, n_relevant: np.ndarray, layout: str, k: int = 200):
    """The exact expectation of each figure under a uniformly random ranking of n photos."""
    k = max(1, min(k, n))
    if layout == CATEGORY:
        return {
            "map_all": M.expected_map(n, n_relevant),
            f"map_{k}": M.expected_map(n, n_relevant, k),
            f"p_{k}": M.expected_precision_at_k(n, n_relevant, k),
        }
    return {f"acc_{a}": M.expected_accuracy_at_k(n, n_relevant, a) for a in (1, 10)}


def ranked_figures(relevant, ids, distances, n_relevant, layout, k: int = 200):
    """(expected over tie orders, file order) figures of rankings ``ids`` (nq, n) of the gallery
    with their ascending ``distances``; ``relevant`` (nq, n) is unranked (by photo id)."""
    rel = np.take_along_axis(relevant, ids, axis=1)
    expected, _ = ranking_metrics(rel, n_relevant, layout, k, distances)
    file_order, _ = ranking_metrics(rel, n_relevant, layout, k)
    return expected, file_order


def binary_matches(query_codes: np.ndarray, gallery_codes: np.ndarray, bits: int, mid: str):
    """Full gallery ranking through the engine's BinaryIndex: ``Matches`` (ids, Hamming
    distances), (nq, n) each, equal distances by photo id."""
    index = BinaryIndex(bits, mid)
    index.add(np.arange(len(gallery_codes), dtype=np.int64), gallery_codes)
    return index.search(query_codes, len(gallery_codes))


def binary_ranking(query_codes: np.ndarray, gallery_codes: np.ndarray, bits: int, mid: str):
    """Full gallery ranking (nq, n) of photo ids through the engine's BinaryIndex."""
    return binary_matches(query_codes, gallery_codes, bits, mid).ids


def cosine_matches(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, distances) of the full ranking by cosine similarity (distance: minus it; ties by
    photo id)."""
    negated = -_cosine(queries, gallery)
    order = np.argsort(negated, axis=1, kind="stable")
    return order, np.take_along_axis(negated, order, axis=1)


def tie_summary(relevant, ids, distances, codes: np.ndarray) -> dict[str, float]:
    """``distinct``: distinct codes of the gallery; ``gallery``: its size; ``tie_at_hit``: mean
    size of the tie group (photos at equal distance) that holds each query's best relevant photo;
    ``hit_at_distance_0``: queries whose best relevant photo is at distance 0."""
    rel = np.take_along_axis(relevant, ids, axis=1)
    first = np.argmax(rel, axis=1)[:, None]
    hit_distance = np.take_along_axis(distances, first, axis=1)
    tie = (distances == hit_distance).sum(axis=1)
    return {
        "distinct": M.distinct_codes(codes),
        "gallery": len(codes),
        "tie_at_hit": float(tie.mean()) if len(tie) else 0.0,
        "hit_at_distance_0": int((hit_distance == 0).sum()),
    }


def cosine_ranking(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Full ranking by cosine similarity, ties by photo id (stable sort)."""
    return np.argsort(-_cosine(queries, gallery), axis=1, kind="stable")


def _cosine(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    g = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    return q @ g.T


def embed_in_batches(fn, arrays: np.ndarray, batch_size: int, stage: str, cancel: threading.Event):
    """``fn`` over ``arrays`` in batches, yielding EvalProgress(``stage``); returns the rows
    concatenated. Raises Cancelled between batches once ``cancel`` is set."""
    out = []
    for i in range(0, len(arrays), batch_size):
        if cancel.is_set():
            raise Cancelled("Evaluation was cancelled.")
        out.append(fn(arrays[i : i + batch_size]))
        yield EvalProgress(stage, min(i + batch_size, len(arrays)), len(arrays))
    return np.concatenate(out)


def distractor_folder(folder: Path) -> Path:
    """Where the distractor photos of ``extra_gallery`` are: a data set folder's ``photos/``
    (not its sketches or edge maps), else the folder itself."""
    folder = Path(folder)
    if (folder / "photos").is_dir() and (folder / "sketches").is_dir():
        return folder / "photos"
    if not folder.is_dir():
        raise ConfigError(f"The extra gallery {folder} is not a folder of photos.")
    return folder


def _extra_photos(folder: Path, size: int, cancel: threading.Event):
    paths = [Path(p) for p, _, _ in walk_photos(folder)]
    arrays, skipped = [], 0
    for i, path in enumerate(paths):
        if cancel.is_set():
            raise Cancelled("Evaluation was cancelled.")
        try:
            arrays.append(read_photo(path, size))
        except (ImageLoadError, OSError) as exc:
            skipped += 1
            log.warning("Distractor %s skipped: %s", path, exc)
        if (i + 1) % 64 == 0 or i + 1 == len(paths):
            yield EvalProgress("distractors", i + 1, len(paths))
    empty = np.empty((0, size, size, 3), np.uint8)
    return (np.stack(arrays) if arrays else empty), skipped


@dataclass(frozen=True)
class EvalSet:
    """What one evaluation measures on: the queries that have a relevant photo, the gallery and
    which photos are relevant to which query. Every figure of a report, the method's extra
    figures included, is measured on one EvalSet."""

    dataset: SketchDataset  # the view evaluated (classes, split, doodle queries)
    source: SketchDataset  # the same view before the split (e.g. to fit on its training split)
    split: str | None
    sketches: np.ndarray  # uint8 (nq, 256, 256): queries as a search hands them to the model
    photos: np.ndarray  # uint8 (n, P, P, 3): data set photos, then distractors
    edges: np.ndarray | None  # uint8 (n, P, P) released edge maps, or None (the engine's)
    relevant: np.ndarray  # bool (nq, n)
    n_relevant: np.ndarray  # int (nq,)
    without_relevant: int  # queries left out: no relevant photo in the gallery
    distractors: int
    distractors_skipped: int

    @property
    def layout(self) -> str:
        """The data set's layout (category level or fine-grained): what counts as a hit."""
        return self.dataset.layout


ExtraFigures = Callable[
    [SketchHashModel, EvalSet, Any, threading.Event], Generator[EvalProgress, None, dict]
]
"""A method's extra figures: called with the model, the EvalSet, the binary ranking of the
headline figures (``engine.index.Matches``) and the cancel event; yields progress and returns
its figures, which the report keeps under the hook's name (``EvalReport.extras``)."""


def prepare_for_search(
    dataset: SketchDataset, model: SketchHashModel, cancel: threading.Event | None = None
) -> Generator[PrepareProgress, None, PreparedData]:
    """``prepare_arrays`` with the sketches as a search prepares them: the 256 px sketch of
    ``engine.sketch`` (a file's ``load_sketch``, a doodle's ``rasterize``), which the model
    resizes at its boundary; photos as the indexer prepares them."""
    return prepare_arrays(dataset, model.photo_size, SKETCH_SIZE, cancel)


def evaluation_set(
    model: SketchHashModel,
    data_dir: str | Path,
    config: EvalConfig,
    cancel: threading.Event,
) -> Generator[EvalProgress, None, EvalSet]:
    """Load ``data_dir``, take the view ``config`` asks for, decode it (and the distractors,
    and the released edge maps where asked) and work out the relevant photos."""
    source, dataset, split = _view(load_dataset(data_dir), config)
    data = yield from as_eval_progress(prepare_for_search(dataset, model, cancel))
    photos, labels = data.photos, data.photo_labels
    skipped = 0
    if config.extra_gallery is not None:
        extra, skipped = yield from _extra_photos(
            distractor_folder(config.extra_gallery), model.photo_size, cancel
        )
        photos = np.concatenate([photos, extra])
        labels = np.concatenate([labels, np.full(len(extra), -1, np.int64)])
    if dataset.layout == CATEGORY:
        relevant = data.sketch_labels[:, None] == labels[None, :]
    else:
        relevant = data.sketch_photo[:, None] == np.arange(len(photos))[None, :]
    n_relevant = relevant.sum(axis=1)
    keep = n_relevant > 0
    edges = None
    if model.needs_edges and config.edges == "released":
        edges = yield from as_eval_progress(released_edge_maps(dataset, model.photo_size, cancel))
    return EvalSet(
        dataset=dataset,
        source=source,
        split=split,
        sketches=data.sketches[keep],
        photos=photos,
        edges=edges,
        relevant=relevant[keep],
        n_relevant=n_relevant[keep],
        without_relevant=int((~keep).sum()),
        distractors=int(len(photos) - len(data.photos)),
        distractors_skipped=skipped,
    )


def embed_gallery(fn, evalset: EvalSet, batch_size: int, cancel: threading.Event):
    """``fn(photos, edges)`` over the gallery in batches (edges: the released maps or None)."""
    photos, edges = evalset.photos, evalset.edges
    return (
        yield from embed_in_batches(
            lambda ix: fn(photos[ix], None if edges is None else edges[ix]),
            np.arange(len(photos)),
            batch_size,
            "photos",
            cancel,
        )
    )


def evaluate(
    model: SketchHashModel,
    data_dir: str | Path,
    config: EvalConfig | None = None,
    cancel: threading.Event | None = None,
    extras: Mapping[str, ExtraFigures] | None = None,
) -> Generator[EvalProgress, None, EvalReport]:
    """Evaluate ``model`` on ``data_dir``; yields progress, returns the EvalReport.

    ``extras``: a method's extra figures (e.g. ``reranking_figures``), each measured on the
    same EvalSet and binary ranking as the headline figures, kept in ``EvalReport.extras``."""
    config = config or EvalConfig()
    cancel = cancel or threading.Event()
    ev = yield from evaluation_set(model, data_dir, config, cancel)
    relevant, n_relevant, photos, layout = ev.relevant, ev.n_relevant, ev.photos, ev.layout
    bs = config.batch_size
    q_emb = yield from embed_in_batches(model.embed_sketches, ev.sketches, bs, "sketches", cancel)
    g_emb = yield from embed_gallery(model.embed_photos, ev, bs, cancel)
    q_codes, g_codes, mid = pack_codes(q_emb), pack_codes(g_emb), model_id(model)
    found = binary_matches(q_codes, g_codes, model.bits, mid)
    figures, file_order = ranked_figures(
        relevant, found.ids, found.distances, n_relevant, layout, config.k
    )
    random = random_figures(len(photos), n_relevant, layout, config.k)
    codes = tie_summary(relevant, found.ids, found.distances, g_codes)
    asymmetric: dict[str, float] = {}
    use_asymmetric = model.asymmetric and config.asymmetric
    # as a library stores them (float16), which the shortlist is ranked with
    photo_values = np.asarray(g_emb, np.float16) if model.photo_values else None
    codes_only: dict[str, dict] = {}

    def asymmetric_figures(expand: int, values) -> dict[str, float]:
        ranked = asymmetric_against_gallery(
            q_emb, g_codes, model.bits, expand=expand, photo_values=values
        )
        figures, _ = ranked_figures(
            relevant, ranked.ids, ranked.distances, n_relevant, layout, config.k
        )
        return figures

    if use_asymmetric:
        asymmetric = asymmetric_figures(0, photo_values)
        if photo_values is not None:  # the photos' codes alone, as before values were stored
            codes_only["asymmetric"] = asymmetric_figures(0, None)
    expanded: dict[str, float] = {}
    if config.expand and model.expands:  # a search never expands a fine-grained model
        m = config.expand
        if use_asymmetric:
            expanded = asymmetric_figures(m, photo_values)
            if photo_values is not None:
                codes_only["expanded"] = {"m": m, **asymmetric_figures(m, None)}
        else:
            again = binary_matches(
                expand_against_gallery(q_codes, g_codes, model.bits, m), g_codes, model.bits, mid
            )
            expanded, _ = ranked_figures(
                relevant, again.ids, again.distances, n_relevant, layout, config.k
            )
        expanded = {"m": m, **expanded}
    real = {}
    if config.real_valued:
        order, distance = cosine_matches(q_emb, g_emb)
        real, _ = ranked_figures(relevant, order, distance, n_relevant, layout, config.k)
    baseline: dict[str, Any] = {}
    if config.baseline:
        baseline = yield from _classical(
            ev.sketches, photos, relevant, n_relevant, layout, config.k
        )
    extra: dict[str, dict] = {}
    for name, hook in (extras or {}).items():
        extra[name] = yield from hook(model, ev, found, cancel)
    protocol = {
        "data": str(ev.dataset.root),
        "layout": layout,
        "split": ev.split or ("all" if ev.dataset.splits else "all (no split.json)"),
        "queries": len(ev.sketches),
        "queries_without_relevant_photo": ev.without_relevant,
        "gallery": len(photos),
        "distractors": ev.distractors,
        "distractors_skipped": ev.distractors_skipped,
        "distractors_from": (
            str(distractor_folder(config.extra_gallery)) if config.extra_gallery else "none"
        ),
        "hit": "same class" if layout == CATEGORY else "the sketch's own photo",
        "binary": f"{model.bits}-bit codes, Hamming distance, engine BinaryIndex (Faiss)",
        "asymmetric": (
            ("the photos' stored outputs (float16)" if photo_values is not None else "photo codes")
            + " ranked by the asymmetric distance to the sketch's unbinarised output "
            "(engine.asymmetric, as a search ranks them)"
            if use_asymmetric
            else "not used"
        ),
        "codes_only": (
            "asymmetric and expanded with the photos' codes alone (no stored outputs)"
            if codes_only
            else "not measured"
        ),
        "expanded": (
            f"the query expanded by its {config.expand} nearest photos "
            + (
                "in the asymmetric space (engine.asymmetric)"
                if use_asymmetric
                else "by a majority vote on the code (engine.expansion)"
            )
            + ", as a search with that expansion, then ranked again"
            if config.expand and model.expands
            else "not measured"
        ),
        "real_valued": "cosine similarity of the model outputs before binarisation",
        "ties": TIES,
        "edges": config.edges if model.needs_edges else "not used",
        "model_id": model_id(model),
        "name": config.protocol,
        "key": protocol_key(config),
        "class_count": len(ev.dataset.classes),
        "query_source": (
            f"QuickDraw drawings from {config.doodles}, "
            f"{config.doodles_per_class or 'all'} a class, rasterised by engine.sketch.rasterize"
            if config.doodles is not None
            else "the data set's sketches"
        ),
    }
    if config.protocol != STANDARD:
        protocol["split"] = f"none (every sketch and photo of the {config.protocol} classes)"
        protocol["class_names"] = list(ev.dataset.classes)
    return EvalReport(
        figures,
        random,
        real,
        baseline,
        protocol,
        expanded,
        asymmetric,
        file_order,
        codes,
        codes_only,
        extra,
    )


def protocol_key(config: EvalConfig) -> str | None:
    """The name a report of ``config`` is stored under (None: the main figures)."""
    parts = [config.protocol] if config.protocol != STANDARD else []
    parts += ["doodles"] if config.doodles is not None else []
    parts += ["extra_gallery"] if config.extra_gallery is not None else []
    return "_".join(parts) or None


def _view(
    dataset: SketchDataset, config: EvalConfig
) -> tuple[SketchDataset, SketchDataset, str | None]:
    """The view before the split, the data set view ``config`` evaluates (its queries replaced
    by doodles if asked), and the split used."""
    if config.classes:
        dataset = dataset.restrict_classes(config.classes)
    split = config.split if dataset.splits else None
    if config.protocol != STANDARD:
        if dataset.layout != CATEGORY:
            raise ConfigError(f"The {config.protocol} protocol needs a category-level data set.")
        wanted = {class_key(c): c for c in NAMED_CLASS_SETS[config.protocol]}
        have = [c for c in dataset.classes if class_key(c) in wanted]
        missing = sorted(set(wanted) - {class_key(c) for c in have})
        if missing:
            raise ConfigError(
                f"{dataset.root} lacks {len(missing)} class(es) of the {config.protocol} "
                f"protocol ({', '.join(missing[:5])}); it is measured on the Sketchy data."
            )
        dataset, split = dataset.restrict_classes(have), None
    source, dataset = dataset, dataset.subset(split)
    if config.doodles is None:
        return source, dataset, split
    if dataset.layout != CATEGORY:
        raise ConfigError("Doodle queries need a category-level data set (photos/<class>/).")
    files = quickdraw_files(config.doodles)
    drawn = [c for c in dataset.classes if class_key(c) in files]
    if not drawn:
        raise ConfigError(f"{config.doodles} has drawings of none of the classes evaluated.")
    dataset = dataset.restrict_classes(drawn)
    doodles = doodle_sketches(
        config.doodles, dataset.classes, config.doodles_per_class, training=False
    )
    return source, replace(dataset, sketches=tuple(doodles)), split


def as_eval_progress(
    gen: Generator[PrepareProgress, None, Any],
) -> Generator[EvalProgress, None, Any]:
    """Relay a decoding generator's progress as EvalProgress; return its value."""
    return relay(gen, lambda p: EvalProgress(p.what, p.done, p.total))


def _classical(sketches, photos, relevant, n_relevant, layout, k):
    from training.classical import hog_codes, photo_hog, sketch_hog

    yield EvalProgress("baseline", 0, 2)
    s_feat = sketch_hog(sketches)
    yield EvalProgress("baseline", 1, 2)
    p_feat = photo_hog(photos)
    yield EvalProgress("baseline", 2, 2)
    s_codes, p_codes = hog_codes(s_feat, p_feat)
    found = binary_matches(s_codes, p_codes, 64, "classical-hog")
    binary, file_order = ranked_figures(relevant, found.ids, found.distances, n_relevant, layout, k)
    order, distance = cosine_matches(s_feat, p_feat)
    real, _ = ranked_figures(relevant, order, distance, n_relevant, layout, k)
    return {
        "name": "HOG of sketch vs HOG of photo edge map",
        **binary,
        "real_valued": real,
        "file_order": file_order,
        "distinct_codes": M.distinct_codes(p_codes),
    }


def store_metrics(checkpoint: str | Path, report: EvalReport) -> None:
    """Write ``report`` into the checkpoint's metadata; the weights are unchanged.

    The main figures (standard protocol) are the metadata's ``metrics``; the figures of another
    protocol go to ``metrics["protocols"][report.key]``, so neither overwrites the other. On a
    data set other than the one the checkpoint trained on (a shoe model on QMUL-Chair), the
    key is ``never_trained_<data set>`` (then the protocol's own key, if any)."""
    from engine.models import read_checkpoint_info

    figures = replace(report, extras={}).to_json()  # a method's extra figures are printed only
    trained = (read_checkpoint_info(checkpoint).metadata.get("data") or {}).get("root")
    evaluated = Path(str(report.protocol.get("data", "")))
    key = report.key
    if trained and evaluated.name and Path(trained).name != evaluated.name:
        key = "_".join(["never_trained", evaluated.name, *([key] if key else [])])
    store_figures(checkpoint, figures, key)


def store_figures(checkpoint: str | Path, figures: dict[str, Any], key: str | None) -> None:
    """Write one evaluation's JSON figures (``EvalReport.to_json``) into the checkpoint: the main
    figures with ``key`` None, else ``metrics["protocols"][key]``; the rest is kept."""
    from engine.models import read_checkpoint_info, resave_checkpoint

    stored = dict(read_checkpoint_info(checkpoint).metadata.get("metrics") or {})
    protocols = dict(stored.pop("protocols", None) or {})
    if stored and "metrics" not in stored:  # an older checkpoint stored the figures alone
        stored = {"metrics": stored}
    if key is None:
        stored = dict(figures)
    else:
        protocols[key] = figures
    stored.setdefault("metrics", {})  # CheckpointInfo.metrics: the main figures, or none
    if protocols:
        stored["protocols"] = protocols
    resave_checkpoint(checkpoint, checkpoint, metrics=stored)
