"""``sketch-search evaluate``: retrieval figures of a checkpoint on a data set folder.

Prints each figure with the random-ranking expectation beside it, the asymmetric figures (the
photos' stored outputs against the sketch's unbinarised output, as a search of a category-level
model ranks; and with the photos' codes alone, ``codes_only``),
the expanded ones, the real-valued (before binarisation) figures, the classical HOG baseline,
and the protocol (queries, gallery, ties).
The figures are the expectation over every order of photos at equal distance (short codes tie
often); the ``file order`` column is that of the order a search shows (ties by photo id), and
the number of distinct codes in the gallery is printed beside them.
``--json`` prints ``{"metrics", "file_order", "codes", "random", "asymmetric", "expanded",
"codes_only", "real_valued", "baseline", "protocol"}`` (and
``"reranking"`` with ``--rerank``: the shortlist re-ranked by the model's exact distance, and the
exhaustive ranking by it, which is the paper's protocol for DSSA); ``--store``
also writes them into the checkpoint's metadata (weights, name and training record unchanged).

``--protocol unseen20`` measures the class-disjoint validation (the 20 classes a model trained
with ``train --hold-out unseen20`` never saw: all their sketches against all their photos);
``--doodles DIR`` queries with QuickDraw drawings (``--doodles-per-class N`` of each) instead of
the data set's sketches; the two combine. Their figures are stored under their own key
(``metrics.protocols.<key>``), never over the main figures.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

from app.progress import ProgressLine, bar_updater


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="measure a checkpoint's retrieval on a data set")
    p.add_argument("--model", required=True, type=Path, help="checkpoint file")
    p.add_argument("--data", required=True, type=Path, help="data set folder")
    p.add_argument("--split", default="test", help="split of split.json (default: test; 'all')")
    p.add_argument(
        "--extra-gallery",
        type=Path,
        metavar="DIR",
        help="add every photo under DIR to the gallery as a distractor (relevant to no query), "
        "e.g. another data set's photos/",
    )
    p.add_argument("--classes", nargs="+", help="category level: only these classes")
    p.add_argument(
        "--edges",
        choices=("engine", "released"),
        default="engine",
        help="edge-map methods: the engine's edge maps (default) or the data set's edges/",
    )
    p.add_argument(
        "--protocol",
        choices=("standard", "unseen20"),
        default="standard",
        help="standard (default: the split's sketches and photos) or unseen20 (the 20 classes "
        "`train --hold-out unseen20` leaves out: all their sketches and photos, no split)",
    )
    p.add_argument(
        "--doodles",
        type=Path,
        metavar="DIR",
        help="query with the QuickDraw drawings in DIR (<word>.ndjson.gz) of the classes "
        "evaluated, drawn as the canvas draws; gallery: their classes' photos",
    )
    p.add_argument(
        "--doodles-per-class", type=int, metavar="N", help="at most N drawings a class (all)"
    )
    p.add_argument(
        "--expand",
        type=int,
        metavar="M",
        default=None,
        help="also rank with query expansion over the M nearest photos, as `query --expand M` "
        "(default: the app's default expansion; 0: not measured)",
    )
    p.add_argument(
        "--hamming-only",
        action="store_true",
        help="measure expansion as a search with --hamming-only does (a majority vote on the "
        "code) and leave out the asymmetric figures",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the classical HOG baseline")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    p.add_argument(
        "--rerank",
        nargs="*",
        type=int,
        metavar="N",
        help="also re-rank the Hamming shortlist of the N nearest photos (default 10 20 50 100) "
        "by the model's exact distance, as `query --rerank` does (methods that re-rank: DSSA)",
    )
    p.add_argument(
        "--store",
        action="store_true",
        help="write the figures into the checkpoint (the app and `models` show them)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.errors import ConfigError
    from engine.models import load_checkpoint
    from training import EvalConfig, evaluate, reranking_figures, store_metrics
    from training.progress import drain
    from training.reranking import DEFAULT_SHORTLISTS

    if args.rerank is not None and (args.protocol != "standard" or args.doodles is not None):
        raise ConfigError("--rerank measures the standard protocol only; leave out --rerank.")
    if args.doodles_per_class is not None and args.doodles is None:
        raise ConfigError("--doodles-per-class needs --doodles DIR.")
    model = load_checkpoint(args.model, device=args.device)
    if args.rerank is not None and not model.rerank_features:
        raise ConfigError(
            f"{args.model.name} is a {model.method} model, which has no exact distance to "
            "re-rank by; leave out --rerank."
        )
    if args.rerank and min(args.rerank) < 1:
        raise ConfigError("--rerank shortlist lengths must be at least 1.")
    config = EvalConfig(
        split=None if args.split == "all" else args.split,
        extra_gallery=args.extra_gallery,
        baseline=not args.no_baseline,
        classes=tuple(args.classes) if args.classes else None,
        edges=args.edges,
        protocol=args.protocol,
        doodles=args.doodles,
        doodles_per_class=args.doodles_per_class,
        **({} if args.expand is None else {"expand": args.expand}),
        asymmetric=not args.hamming_only,
    )
    extras = {}
    if args.rerank is not None:  # the model re-ranks: checked above (model.rerank_features)
        extras["reranking"] = reranking_figures(args.rerank or DEFAULT_SHORTLISTS)
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    bar = ProgressLine()
    try:
        report = drain(
            evaluate(model, args.data, config, cancel, extras), bar_updater(bar, args.json)
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    if args.store:
        store_metrics(args.model, report)
    result = report.to_json()  # with "reranking" when measured (not stored)
    print(json.dumps(result, indent=1) if args.json else format_report(result))
    return 0


def format_report(result: dict[str, Any]) -> str:
    """Human-readable figures: binary, random expectation, real-valued, classical baseline."""
    lines = []
    proto = result.get("protocol", {})
    if proto:
        name = proto.get("key") or proto.get("name", "standard")
        lines.append(
            f"{proto['layout']} {name} protocol on {proto['data']} (split: {proto['split']}): "
            f"{proto['queries']} queries ({proto.get('query_source', 'sketches')}) of "
            f"{proto.get('class_count', '?')} classes, gallery of {proto['gallery']} photos "
            f"({proto['distractors']} distractors); hit = {proto['hit']}."
        )
        lines.append(f"Binary: {proto['binary']}; ties: {proto['ties']}.")
    codes = result.get("codes")
    if codes:
        lines.append(
            f"Codes: {codes['distinct']} distinct among the {codes['gallery']} gallery photos; "
            f"{codes['tie_at_hit']:.1f} photos on average at the distance of a query's best "
            f"relevant photo, which is at distance 0 for {codes['hit_at_distance_0']} queries."
        )
    real = result.get("real_valued", {})
    base = result.get("baseline", {})
    expanded = result.get("expanded", {})
    qe = f"QE m={expanded['m']}" if expanded else "QE"
    asym = result.get("asymmetric", {})
    file_order = result.get("file_order", {})
    lines.append(
        f"{'metric':<10}{'binary':>10}{'file ord':>10}{'asym':>10}{qe:>10}{'random':>10}"
        f"{'real':>10}{'HOG':>10}{'HOG real':>10}"
    )
    for key, value in result["metrics"].items():
        cells = [
            value,
            file_order.get(key),
            asym.get(key),
            expanded.get(key),
            result["random"].get(key),
            real.get(key),
            base.get(key),
            base.get("real_valued", {}).get(key),
        ]
        text = "".join(f"{c:>10.4f}" if c is not None else f"{'-':>10}" for c in cells)
        lines.append(f"{key:<10}{text}")
    codes_only = result.get("codes_only", {})
    if codes_only:
        cells = "; ".join(
            f"{name} " + " ".join(f"{k} {v:.4f}" for k, v in figures.items() if k != "m")
            for name, figures in codes_only.items()
        )
        lines.append(f"With the photos' codes alone (no stored outputs): {cells}")
    reranking = result.get("reranking")
    if reranking:
        proto = reranking["protocol"]
        lines.append(f"Re-ranked by {proto['distance']} on {proto['features']} features:")
        in_file_order = reranking.get("file_order", {})
        for name, figures in reranking.items():
            if name not in ("protocol", "file_order"):
                cells = " ".join(f"{k} {v:.4f}" for k, v in figures.items())
                plain = " ".join(f"{k} {v:.4f}" for k, v in in_file_order.get(name, {}).items())
                lines.append(f"  {name:<18}{cells}" + (f"  (file order: {plain})" if plain else ""))
    return "\n".join(lines)
