"""The ``sketch-search`` command: the GUI with no arguments, else a subcommand.

Subcommands: index, remove, query, models, compact, bench, train, evaluate, fit-codes. ``--json``
makes output machine-readable. Engine errors are shown as one clear line and exit status 2;
Ctrl+C during long work cancels it cleanly (committed work is kept) and exits with status 130.

Start-up: this module and the parser import nothing heavy. ``--help``, ``--version`` and
``models`` never import torch (``engine.model_files`` reads checkpoints' headers with json);
the commands that need a model import it when they load one, after telling a person at a
terminal what they are doing (``StatusLine``), so something shows at once.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import shlex
import sys
import threading
from pathlib import Path

from app.progress import ProgressLine, StatusLine, format_duration
from engine import __version__
from engine.errors import LibraryBusyError, SketchSearchError
from engine.paths import display_path, display_text

log = logging.getLogger(__name__)

EXIT_ERROR = 2
EXIT_CANCELLED = 130
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
STATUS = StatusLine()  # what a command is doing, on a terminal only; cleared before any output


def _library(args: argparse.Namespace):
    from engine.library import Library

    return Library(args.library)


def _model_for(args: argparse.Namespace, library):
    """--model if given, else the model this library was last indexed with, else the default."""
    spec = args.model or library.get_setting("model")
    STATUS.show(f"Loading the model {_spec_name(spec)}…")
    from engine.store import load_model  # torch and the networks: seconds on a small machine

    return load_model(spec, device=args.device), spec


def _spec_name(spec) -> str:
    """The name of the model ``spec`` loads, read without loading it (for the status line)."""
    from engine.errors import CheckpointError
    from engine.model_files import default_checkpoint, installed_checkpoints, read_checkpoint_info

    try:
        if not spec:
            default = default_checkpoint()
            return read_checkpoint_info(default).name if default else "(none installed)"
        shipped = [i for i in installed_checkpoints() if i.method == str(spec)]
        return shipped[0].name if shipped else read_checkpoint_info(Path(spec).expanduser()).name
    except CheckpointError:
        return str(spec)  # loading it says what is wrong


def _json_path(path: Path) -> dict:
    """``path`` as printable text; a name that is not valid UTF-8 shows escapes (``\\xe9``)
    there, and its exact bytes come too, base64-encoded, as ``path_base64``."""
    shown = display_path(path)
    if shown == os.fsdecode(path):
        return {"path": shown}
    return {"path": shown, "path_base64": base64.b64encode(os.fsencode(path)).decode("ascii")}


def _waiting(holder) -> None:
    who = holder.describe() if holder else "another process"
    print(
        f"Waiting for {who} to finish writing to the library (Ctrl+C stops waiting)...",
        file=sys.stderr,
        flush=True,
    )


def cmd_index(args: argparse.Namespace) -> int:
    from engine.library import check_photo_folder

    STATUS.show("Opening the library…")
    for folder in args.folders:  # a mistyped folder creates no library
        check_photo_folder(folder)
    library = _library(args)
    try:
        with library.writing("indexing", wait=None if args.wait else 0.0, on_wait=_waiting):
            return _index(args, library)
    except LibraryBusyError as exc:
        raise LibraryBusyError(f"{exc} Or add --wait to wait for it.", exc.holder) from exc


def _index(args: argparse.Namespace, library) -> int:
    from engine.indexer import index_library

    if not args.folders and not library.roots():
        raise SketchSearchError(
            "This library has no photo folders yet: name one, 'sketch-search index FOLDER'."
        )
    roots = [library.add_root(folder) for folder in args.folders] or library.roots()
    model, spec = _model_for(args, library)
    library.set_setting("model", str(spec) if spec else None)
    STATUS.show("Looking for photos…")
    cancel = threading.Event()
    bar = ProgressLine()
    last = None
    try:
        for progress in index_library(
            library, model, roots=roots, batch_size=args.batch_size, cancel=cancel
        ):
            last = progress
            done = progress.encoded + progress.failed
            if args.json:
                continue
            STATUS.clear()
            if progress.phase == "scanning":
                bar.update(progress.found, None, "files found")
            else:
                bar.update(
                    done,
                    progress.to_encode,
                    f"{progress.rate:.1f} photos/s ETA {format_duration(progress.eta_s)}",
                )
    except KeyboardInterrupt:
        cancel.set()
        STATUS.clear()
        bar.close()
        print(
            "Cancelled: photos indexed so far are kept; run the command again to resume.",
            file=sys.stderr,
        )
        return EXIT_CANCELLED
    STATUS.clear()
    bar.close()
    failures = [f for f in library.failures() if any(r in f.path.parents for r in roots)]
    summary = {
        "found": last.found,
        "encoded": last.encoded,
        "unchanged": last.unchanged,
        "moved": last.moved,
        "removed": last.removed,
        "failed": last.failed,
        "unavailable_roots": last.unavailable_roots,
        "unavailable": [_json_path(Path(p)) | {"reason": why} for p, why in last.unavailable],
        "kept": last.kept,
        "skipped": last.skipped,
        "seconds": round(last.elapsed_s, 2),
        "failures": [_json_path(f.path) | {"error": f.error} for f in failures],
    }
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(
            f"{last.found} photos found: {last.encoded} encoded, {last.unchanged} unchanged, "
            f"{last.moved} moved, {last.removed} removed, {len(failures)} unreadable "
            f"({last.elapsed_s:.1f} s)."
        )
        for failure in failures:
            print(f"  unreadable: {display_path(failure.path)}: {failure.error}")
        for path, why in last.unavailable:
            print(
                f"  not available: {display_path(path)}: {why}; its photos are kept. To forget "
                f"them: {shlex.join(['sketch-search', 'remove', display_path(path)])}"
            )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    library = _library(args)
    roots = library.roots()
    paths = []
    for folder in args.folders:
        path = folder.expanduser()
        path = path.resolve() if path.exists() else path.absolute()
        if path not in roots:
            listed = ", ".join(display_path(r) for r in roots) or "none yet"
            raise SketchSearchError(
                f"{display_path(path)} is not one of this library's folders ({listed}); "
                "nothing was removed."
            )
        paths.append(path)
    removed = [(path, library.remove_root(path)) for path in paths]
    if args.json:
        rows = [_json_path(path) | {"photos": count} for path, count in removed]
        print(json.dumps({"removed": rows}, indent=1))
    else:
        for path, count in removed:
            print(
                f"Removed {display_path(path)}: {count} photos forgotten with their codes "
                "(the files themselves are untouched)."
            )
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    STATUS.show("Reading the sketch…")
    from engine.sketch import load_sketch

    load_sketch(args.sketch)  # a bad sketch is one clear line, before torch, library or model load
    library = _library(args)
    model, spec = _model_for(args, library)
    from engine.expansion import DEFAULT_QUERY_WEIGHT
    from engine.model_files import model_name
    from engine.searcher import DEFAULT_EXPAND, Searcher

    STATUS.show("Searching…")
    searcher = Searcher(library, model)
    name = model_name(model)
    if searcher.size == 0:
        how = _index_command(args, spec) if library.roots() else "sketch-search index FOLDER"
        raise SketchSearchError(f"No photos are indexed for this model yet; run '{how}' first.")
    response = searcher.search(
        Path(args.sketch),
        k=args.top,
        rerank=args.rerank,
        shortlist=args.shortlist,
        expand=DEFAULT_EXPAND if args.expand is None else args.expand,
        query_weight=DEFAULT_QUERY_WEIGHT if args.query_weight is None else args.query_weight,
        asymmetric=False if args.hamming_only else None,
    )
    STATUS.clear()
    if response.rerank_note:
        print(f"Not re-ranked: {response.rerank_note}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "results": [
                        _json_path(r.path)
                        | {"distance": r.distance, "rank": r.rank}
                        | ({"score": r.score} if r.score is not None else {})
                        for r in response.results
                    ],
                    "timings_ms": {k: round(v, 3) for k, v in response.timings_ms.items()},
                    "model": name,
                    "model_id": response.model_id,
                    "bits": response.bits,
                    "indexed": response.indexed,
                    "not_indexed": response.not_indexed,
                    "reranked": response.reranked,
                    "expanded": response.expanded,
                    "asymmetric": response.asymmetric,
                },
                indent=1,
            )
        )
    else:
        for r in response.results:
            ranked_by = f"  {r.score:6.2f}" if response.asymmetric and r.score is not None else ""
            where = display_path(r.path)
            print(f"{r.rank:4d}  {r.distance:3d}/{response.bits}{ranked_by}  {where}")
        stages = ", ".join(f"{k} {v:.1f} ms" for k, v in response.timings_ms.items())
        print(
            f"{response.indexed} photos searched with {name} ({response.model_id}): {stages}",
            file=sys.stderr,
        )
    if response.not_indexed:
        print(
            f"{response.not_indexed} more photos in the library have no codes for "
            f"{name} yet (indexed with another model) and were not searched. "
            f"To search them too, run: {_index_command(args, spec)}",
            file=sys.stderr,
        )
    return 0


def _index_command(args: argparse.Namespace, spec) -> str:
    """The command that indexes every folder of the query's library with the query's model."""
    words = ["sketch-search", "index"]
    if args.library is not None:
        words += ["--library", str(args.library)]
    if spec:
        words += ["--model", str(spec)]
    return shlex.join(words)


def cmd_models(args: argparse.Namespace) -> int:
    from engine.model_files import METHODS, default_checkpoint, installed_checkpoints

    default = default_checkpoint()
    checkpoints = [
        {
            "name": info.name,
            "path": str(info.path),
            "method": info.method,
            "bits": info.bits,
            "backbone": info.backbone,
            "default": default is not None and info.path == default,
            "metrics": info.metrics,
            "searched": _searched(info.metadata.get("metrics") or {}),
            "protocols": _protocol_figures(info.metadata),
        }
        for info in installed_checkpoints()
    ]
    if args.json:
        print(json.dumps({"methods": list(METHODS), "checkpoints": checkpoints}, indent=1))
        return 0
    print("Methods: " + ", ".join(METHODS))
    print("Checkpoints:" if checkpoints else "No checkpoints installed.")
    for c in checkpoints:
        mark = " (default)" if c["default"] else ""
        metrics = ", ".join(
            f"{k} {v:.3f}" for k, v in c["metrics"].items() if isinstance(v, int | float)
        )
        if "map_all" in c["searched"]:
            metrics += f"; as the app searches map_all {c['searched']['map_all']:.3f}"
        print(
            f"  {c['name']}{mark}: {c['method']} {c['bits']} bits, {c['backbone']}"
            f"{'; ' + metrics if metrics else ''}\n    {c['path']}"
        )
        for key, figures in c["protocols"].items():
            shown = [f"{k} {v:.3f}" for k, v in figures["metrics"].items()]
            if "map_all" in figures["searched"]:
                shown.append(f"as the app searches map_all {figures['searched']['map_all']:.3f}")
            for part in ("random", "real_valued"):
                if "map_all" in figures[part]:
                    shown.append(f"{part.replace('_', '-')} map_all {figures[part]['map_all']:.3f}")
            print(f"    {key}: {', '.join(shown)}")
    return 0


def _protocol_figures(metadata: dict) -> dict[str, dict]:
    """The figures of the other evaluation protocols a checkpoint stores (``evaluate --store
    --protocol unseen20``, ``--doodles``), by protocol key: metrics, random, real-valued and
    those of the ranking the app searches with (``_searched``)."""
    stored = (metadata.get("metrics") or {}).get("protocols") or {}
    return {
        key: {part: dict(report.get(part) or {}) for part in ("metrics", "random", "real_valued")}
        | {"searched": _searched(report)}
        for key, report in stored.items()
    }


def _searched(report: dict) -> dict[str, float]:
    """The figures of a stored report as the app ranks by default: with its expansion (which
    is asymmetric for a category-level model), else asymmetric, else {} (the binary figures
    are already the app's ranking, e.g. fine-grained DSSA)."""
    for part in ("expanded", "asymmetric"):
        figures = report.get(part) or {}
        if figures:
            return {k: v for k, v in figures.items() if k != "m"}
    return {}


def cmd_compact(args: argparse.Namespace) -> int:
    from engine.models import resave_checkpoint

    rename = {"name": args.name} if args.name else {}
    out = resave_checkpoint(args.src, args.dst, weights_dtype="float16", **rename)
    before, after = args.src.stat().st_size, out.stat().st_size
    if args.json:
        print(json.dumps({"path": str(out), "bytes_before": before, "bytes_after": after}))
    else:
        print(f"Wrote {out} ({after / 1e6:.1f} MB, was {before / 1e6:.1f} MB)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from app.startup_bench import bench_startup

    def report(line: str) -> None:
        if not args.json:
            print(line, file=sys.stderr, flush=True)

    startup = bench_startup(repeats=args.startup_repeats, report=report)
    if args.startup_only:
        print(json.dumps({"startup": startup}, indent=1))
        return 0
    from engine.bench import run_benchmarks

    results = run_benchmarks(
        photos=args.photos,
        sizes=tuple(args.sizes),
        model_spec=args.model,
        device=args.device,
        work_dir=args.work_dir,
        report=report,
    )
    print(json.dumps({"startup": startup} | results, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sketch-search",
        description="Draw a sketch, find the matching photos. With no command, opens the app.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("--version", action="version", version=f"sketch-search {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser, model: bool = True) -> None:
        p.add_argument(
            "--library",
            type=Path,
            default=None,
            help="library folder (default: the per-user default library)",
        )
        if model:
            p.add_argument(
                "--model",
                default=None,
                help="checkpoint file or method name (default: the library's model, "
                "else the shipped default)",
            )
        p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("index", help="index photo folders (incremental)")
    p.add_argument(
        "folders",
        nargs="*",
        type=Path,
        metavar="FOLDER",
        help="folders to add and index (default: every folder of the library)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--wait",
        action="store_true",
        help="if another process is indexing the library, wait for it instead of stopping",
    )
    common(p)
    p.set_defaults(run=cmd_index)

    p = sub.add_parser(
        "remove", help="forget photo folders and what was indexed in them (files untouched)"
    )
    p.add_argument("folders", nargs="+", type=Path, metavar="FOLDER")
    p.add_argument("--library", type=Path, default=None, help="library folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_remove)

    p = sub.add_parser("query", help="search the library with a sketch image or strokes file")
    p.add_argument("sketch", metavar="SKETCH")
    p.add_argument("--top", type=int, default=20, help="number of results")
    p.add_argument(
        "--rerank",
        action="store_true",
        help="re-order the Hamming shortlist by the model's exact distance (DSSA: HOLEF)",
    )
    p.add_argument(
        "--shortlist", type=int, default=100, help="photos re-ranked with --rerank (default 100)"
    )
    p.add_argument(
        "--expand",
        type=int,
        default=None,
        metavar="M",
        help="query expansion over the M nearest photos: the query moved towards their codes "
        "(with --hamming-only: the code they vote on bit by bit); 0: off (default: the app's "
        "default)",
    )
    p.add_argument(
        "--query-weight",
        type=float,
        default=None,
        metavar="W",
        help="with --hamming-only, the query's vote in --expand, against 1 for each photo "
        "(default 1)",
    )
    p.add_argument(
        "--hamming-only",
        action="store_true",
        help="rank by the Hamming distance of the codes alone, not by the asymmetric distance "
        "to the sketch's unbinarised output (the default of category-level models)",
    )
    common(p)
    p.set_defaults(run=cmd_query)

    p = sub.add_parser("models", help="list methods and installed checkpoints")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("compact", help="write a float16 copy of a checkpoint (half the size)")
    p.add_argument("src", type=Path, metavar="SRC")
    p.add_argument("dst", type=Path, metavar="DST")
    p.add_argument("--name", help="the copy's model name (default: the source's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_compact)

    p = sub.add_parser("bench", help="measure query latency, indexing throughput and memory")
    p.add_argument(
        "--photos",
        type=int,
        default=256,
        help="full-size photos to index (from 200 a run uses the frozen photo graph)",
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--model", default=None, help="checkpoint or method (default: shipped)")
    p.add_argument("--device", default=None)
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the generated 12 MP photos are kept between runs",
    )
    p.add_argument("--json", action="store_true", help="only the JSON result on stdout")
    p.add_argument(
        "--startup-only",
        action="store_true",
        help="only the start-up times of the command line and the app",
    )
    p.add_argument(
        "--startup-repeats", type=int, default=3, help="runs of each start-up measurement"
    )
    p.set_defaults(run=cmd_bench)

    from app.commands import evaluate, fit_codes, train

    train.add_parser(sub)
    evaluate.add_parser(sub)
    fit_codes.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # training runs in a spawned child, also when frozen
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        from app.gui import run_gui

        # the app's few INFO lines (ready, errors shown, training started) go to stderr
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-probe chatter
        return run_gui(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format=LOG_FORMAT)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except SketchSearchError as exc:
        STATUS.clear()
        print(f"error: {display_text(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        STATUS.clear()
        print("Cancelled.", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        STATUS.clear()


if __name__ == "__main__":
    sys.exit(main())
