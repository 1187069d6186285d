"""Benchmarks behind ``sketch-search bench``: figures, not assertions.

1. Query latency per stage: normalise and encode one sketch with the model, then Hamming search
   (k=50) in binary indexes of 10k, 100k and 1M random codes of 64 and 128 bits; the same search
   after query expansion by a majority vote (``engine.expansion``, m = the default: a first
   search for the neighbours, their vote, the search again: ``query_expand_ms_*``); the
   asymmetric ranking of the searcher's default path (``engine.asymmetric``: a Hamming
   shortlist of 1000 ranked against the unbinarised query, ``query_asym_ms_*``; with the
   default expansion, a second shortlist and the ranking of both: ``query_asym_expand_ms_*``);
   the sketch encoder eager (``query_encode_ms``) and frozen for one query as a search runs it
   (``query_encode_frozen_ms``, ``engine.query_encoder``); end to end (normalise, encode with
   the frozen encoder, search as the searcher does by default: asymmetric, with the default
   expansion) at the largest size and 64 bits, without and with expansion
   (``query_end_to_end_ms_*``, ``query_end_to_end_expand_ms_*``); and the time to rebuild the
   in-memory index from a catalog of 100k codes.
2. Indexing throughput on full-size photos (12 MP JPEGs made from real photos, with a little
   grain so they compress like camera files), beside the throughput of decoding alone and of the
   model alone on the same files, as an indexing run of that many photos runs it (from
   ``engine.frozen.FROZEN_PHOTOS_MIN`` photos, 200, through the frozen photo graph; the default
   256 photos make such a run: ``index_frozen_photo_side``), with torch's threads beside the
   decoding threads (``engine.devices.cpu_threads_beside``). ``pipeline_efficiency`` =
   indexing / min(decode, model): 1.0 means decoding hides completely behind encoding (or the
   reverse), which needs them to run on separate resources (decoding on the CPU, the model on a
   GPU). On a CPU-only machine both
   compete for the same cores, so ``pipeline_efficiency_vs_serial`` also compares indexing with
   running the two back to back (1 / (1/decode + 1/model)).
3. Peak resident memory while indexing (sampled from /proc every 20 ms; Linux).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.asymmetric import DEFAULT_ASYMMETRIC_SHORTLIST, asymmetric_search
from engine.catalog import Catalog
from engine.codes import pack_codes
from engine.defaults import DEFAULT_EXPAND
from engine.devices import cpu_threads_beside
from engine.errors import CheckpointError
from engine.expansion import CodeTable, expand_queries
from engine.frozen import RUNTIMES, PhotoEncoder, freeze_side, why_not_frozen
from engine.images import PHOTO_EXTENSIONS, load_photo, prepare_photo
from engine.index import BinaryIndex
from engine.indexer import index_library, walk_photos
from engine.library import Library
from engine.models import SketchHashModel
from engine.models.base import sketch_tensor
from engine.paths import cache_dir
from engine.query_encoder import QueryEncoder
from engine.sketch import Point, Stroke, rasterize
from engine.store import create_fresh, load_model

log = logging.getLogger(__name__)

FULL_SIZE = (4000, 3000)  # 12 MP, the size of a typical phone photo
QUERIES = 20
EXPAND = DEFAULT_EXPAND  # neighbours of the query in the expansion figures


def _label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _bench_sketch() -> list[Stroke]:
    """A house-like drawing: enough strokes to exercise rasterisation."""
    circle = [
        Point(50 + 30 * math.cos(a / 10), 40 + 30 * math.sin(a / 10), 1.0, a * 16.0)
        for a in range(63)
    ]
    lines = [
        ((10, 200), (100, 120)),
        ((100, 120), (190, 200)),
        ((30, 200), (30, 300)),
        ((30, 300), (170, 300)),
        ((170, 300), (170, 200)),
    ]
    strokes = [Stroke(tuple(circle))]
    for (x0, y0), (x1, y1) in lines:
        strokes.append(
            Stroke(
                tuple(
                    Point(x0 + (x1 - x0) * t / 20, y0 + (y1 - y0) * t / 20, 1.0, t * 16.0)
                    for t in range(21)
                )
            )
        )
    return strokes


def bench_query(model: SketchHashModel, sizes: tuple[int, ...], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    strokes = _bench_sketch()
    out: dict[str, float] = {}
    out["query_normalize_ms"] = _median_ms(lambda: rasterize(strokes), 20)
    sketch = rasterize(strokes)
    out["query_encode_ms"] = _median_ms(lambda: model.encode_sketches(sketch[None]), 10)
    encoder = QueryEncoder(model.eval())  # what a search encodes with (engine.query_encoder)
    encoder.warm_up()
    out["query_encode_frozen_ms"] = _median_ms(lambda: encoder.embed(sketch[None]), 10)
    out["query_encoder_runtime"] = encoder.runtime or "the model's own forward"
    out |= _runtimes_side_by_side(model, sketch)
    for bits in (64, 128):
        for n in sizes:
            ids = np.arange(n, dtype=np.int64)
            codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
            index, table = BinaryIndex(bits, "bench"), CodeTable(ids, codes)
            index.add(ids, codes)
            queries = rng.integers(0, 256, (QUERIES, bits // 8), dtype=np.uint8)
            values = rng.standard_normal((QUERIES, bits)).astype(np.float32)
            turn = iter(range(10**9))

            def search(code, expand=0, index=index, table=table) -> None:
                if expand:
                    code = expand_queries(index, table, code, expand)
                index.search(code, 50)

            def asym(value, expand=0, index=index, table=table) -> None:
                asymmetric_search(
                    index, table, value, 50, shortlist=DEFAULT_ASYMMETRIC_SHORTLIST, expand=expand
                )

            def one_query(expand=0, queries=queries, turn=turn, search=search) -> None:
                search(queries[next(turn) % QUERIES][None], expand)

            def one_asym(expand=0, values=values, turn=turn, asym=asym) -> None:
                asym(values[next(turn) % QUERIES][None], expand)

            end_table = table
            if model.photo_values and bits == 64 and n == max(sizes):
                # as the app holds them: the photos' outputs beside their codes, float16
                held = rng.standard_normal((n, bits)).astype(np.float16)
                end_table = CodeTable.from_pairs(ids, pack_codes(held), (ids, held))
                del held

            def end_to_end(expand=0, index=index, table=end_table) -> None:
                values = encoder.embed(rasterize(strokes)[None])
                asymmetric_search(
                    index, table, values, 50, shortlist=DEFAULT_ASYMMETRIC_SHORTLIST, expand=expand
                )

            label = f"{_label(n)}_{bits}"
            out[f"query_ms_{label}"] = _median_ms(one_query, QUERIES)
            out[f"query_expand_ms_{label}"] = _median_ms(lambda q=one_query: q(EXPAND), QUERIES)
            out[f"query_asym_ms_{label}"] = _median_ms(one_asym, QUERIES)
            out[f"query_asym_expand_ms_{label}"] = _median_ms(lambda q=one_asym: q(EXPAND), QUERIES)
            if bits == 64 and n == max(sizes):
                out[f"query_end_to_end_ms_{label}"] = _median_ms(end_to_end, 10)
                out[f"query_end_to_end_expand_ms_{label}"] = _median_ms(
                    lambda e=end_to_end: e(EXPAND), 10
                )
            del index, table, codes, end_table
    out["query_end_to_end_ranks_stored_outputs"] = model.photo_values  # as the app ranks
    return out


def _runtimes_side_by_side(model: SketchHashModel, sketch: np.ndarray) -> dict:
    """The sketch side's time on each frozen runtime that builds here (engine.frozen)."""
    out: dict = {}
    if why_not_frozen(model) is not None:
        return out
    batch = sketch_tensor(sketch[None], model.sketch_size, torch.device("cpu"))
    for runtime in RUNTIMES:
        try:
            graph = freeze_side(model, "sketch", runtimes=(runtime,))
        except Exception as exc:  # not installed here, or the export failed: say so
            out[f"query_encode_{runtime}_ms"] = f"not available: {type(exc).__name__}"
            continue
        with torch.inference_mode():
            out[f"query_encode_{runtime}_ms"] = _median_ms(lambda g=graph: g(batch), 10)
    return out


def _photo_runtimes_side_by_side(model: SketchHashModel, batch: np.ndarray) -> dict:
    """The photo side's rate on each frozen runtime that builds here, batches of 32, on the
    threads an indexing run gives the model (engine.frozen)."""
    out: dict = {}
    if why_not_frozen(model) is not None or model.rerank_features:
        return out
    for runtime in RUNTIMES:
        encoder = PhotoEncoder(model, runtimes=(runtime,))
        if encoder.runtime != runtime:
            out[f"model_photos_per_s_{runtime}"] = f"not available: {encoder.why_not}"
            continue
        out[f"model_photos_per_s_{runtime}"] = _photos_per_s(encoder.encode, batch)
    return out


def _photos_per_s(encode: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> float:
    """Prepared photos encoded a second, in batches of 32, after a warm-up batch of 8."""
    encode(batch[:8])
    t = time.perf_counter()
    for i in range(0, len(batch), 32):
        encode(batch[i : i + 32])
    return len(batch) / (time.perf_counter() - t)


def bench_rebuild(n: int = 100_000, bits: int = 64, seed: int = 0) -> dict:
    """Time to rebuild the in-memory index from a catalog of ``n`` codes (what the searcher
    does on start and on refresh)."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(Path(tmp) / "catalog.sqlite")
        root = catalog.add_root(Path(tmp))
        catalog.register_model("bench", "baseline", bits)
        codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
        with catalog.transaction() as tx:
            tx.executemany(
                "INSERT INTO photos(id, path, root_id, size, mtime_ns, status, updated_at) "
                "VALUES (?, ?, ?, 1, 1, 'ok', 0)",
                ((i, f"{tmp}/p{i}.jpg", root) for i in range(n)),
            )
            catalog.put_codes(tx, "bench", range(n), codes)

        def rebuild() -> None:
            ids, stored = catalog.codes_for("bench", bits)
            BinaryIndex(bits, "bench").add(ids, stored)

        ms = _median_ms(rebuild, 3)
        held = rng.standard_normal((n, bits)).astype(np.float16)
        with catalog.transaction() as tx:
            catalog.put_features(tx, "bench", range(n), held)
        del held

        def rebuild_with_values() -> None:  # a category-level model's (model.photo_values)
            ids, stored = catalog.codes_for("bench", bits)
            BinaryIndex(bits, "bench").add(ids, stored)
            CodeTable.from_pairs(ids, stored, catalog.all_features("bench", bits))

        with_values = _median_ms(rebuild_with_values, 3)
        catalog.close()
    label = f"{_label(n)}_{bits}"
    return {f"index_rebuild_ms_{label}": ms, f"index_rebuild_with_outputs_ms_{label}": with_values}


def make_full_size_photos(source: Path | None, target: Path, count: int, seed: int = 0) -> Path:
    """``count`` 12 MP JPEGs in ``target`` made from real photos under ``source`` (or from
    synthetic gradients when there are none); kept between runs."""
    target.mkdir(parents=True, exist_ok=True)
    have = sorted(target.glob("*.jpg"))
    if len(have) >= count:
        return target
    sources = sorted(Path(p) for p, _, _ in walk_photos(source))[:count] if source else []
    rng = np.random.default_rng(seed)
    for i in range(len(have), count):
        if sources:
            img = Image.open(sources[i % len(sources)]).convert("RGB")
        else:
            grad = np.linspace(0, 255, 256, dtype=np.uint8)
            img = Image.fromarray(np.stack([np.tile(grad, (256, 1))] * 3, axis=2))
        big = np.asarray(img.resize(FULL_SIZE, Image.Resampling.BICUBIC), dtype=np.int16)
        grain = rng.normal(0, 6, (*big.shape[:2], 1)).astype(np.int16)
        big = np.clip(big + grain, 0, 255).astype(np.uint8)
        Image.fromarray(big).save(target / f"photo_{i:04d}.jpg", quality=92)
    return target


class _RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = self.start_rss = _rss_bytes()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.02):
            self.peak = max(self.peak, _rss_bytes())

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def bench_indexing(model: SketchHashModel, folder: Path, workers: int | None = None) -> dict:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS)
    size = model.photo_size
    workers = workers or min(8, max(2, os.cpu_count() or 2))

    def decode(path: Path) -> np.ndarray:
        return prepare_photo(load_photo(path, target_size=size), size)

    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(decode, files))
    decode_rate = len(files) / (time.perf_counter() - t)

    batch = np.stack(arrays)
    # the model as an indexing run of this many photos runs it (engine.frozen, engine.devices)
    with cpu_threads_beside(workers, model.device):
        encode = PhotoEncoder.for_run(model, len(files))
        model_rate = _photos_per_s(encode, batch)
        by_runtime = _photo_runtimes_side_by_side(model, batch)
    del arrays, batch

    with tempfile.TemporaryDirectory() as tmp:
        library = Library(Path(tmp) / "library")
        library.add_root(folder)
        sampler = _RssSampler()
        sampler.start()
        t = time.perf_counter()
        events = list(index_library(library, model, workers=workers))
        elapsed = time.perf_counter() - t
        sampler.stop()
        library.close()
    index_rate = events[-1].encoded / elapsed if elapsed else 0.0
    return {
        "photos": len(files),
        "photo_megapixels": FULL_SIZE[0] * FULL_SIZE[1] / 1e6,
        "decode_photos_per_s": decode_rate,
        "model_photos_per_s": model_rate,
        "index_photos_per_s": index_rate,
        "pipeline_efficiency": index_rate / min(decode_rate, model_rate),
        # when decoding and the model share the same CPU cores they cannot overlap; then the
        # ceiling is running both back to back, and this says how close indexing comes to it
        "pipeline_efficiency_vs_serial": index_rate * (1 / decode_rate + 1 / model_rate),
        "index_peak_rss_mb": sampler.peak / 2**20,
        "index_rss_increase_mb": (sampler.peak - sampler.start_rss) / 2**20,
        "decode_workers": workers,
        "index_frozen_photo_side": encode != model.embed_photos,  # PhotoEncoder.for_run's
        "index_photo_runtime": getattr(getattr(encode, "__self__", None), "runtime", None),
        **by_runtime,
    }


def run_benchmarks(
    photos: int = 256,
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000),
    model_spec: str | None = None,
    device: str | None = None,
    work_dir: Path | None = None,
    source: Path | None = None,
    rebuild_codes: int = 100_000,
    report: Callable[[str], None] = log.info,
) -> dict:
    try:
        model = load_model(model_spec, device=device)
    except CheckpointError:
        if model_spec is not None:
            raise
        report("No default model installed: benchmarking an untrained baseline.")
        model = create_fresh("baseline")
    results: dict = {
        "model": f"{model.method} {model.bits} bits, {model.photo_size} px",
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
    }
    report("Query latency ...")
    results.update(bench_query(model, sizes))
    report("Index rebuild from the catalog ...")
    results.update(bench_rebuild(rebuild_codes))
    folder = work_dir or cache_dir() / "bench-photos"
    if source is None:
        shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sketchy"
        source = shared / "photos" if shared.is_dir() else None
    report(f"Preparing {photos} full-size photos in {folder} ...")
    make_full_size_photos(source, folder, photos)
    report("Indexing throughput ...")
    results.update(bench_indexing(model, folder))
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}
