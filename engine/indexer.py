"""Incremental indexing of photo folders: a generator that yields progress and can be cancelled.

Steps of one run:
1. scan: walk each root and compare each photo file with its catalog row by (size, mtime).
   Nothing is removed without positive evidence that its file is gone (``engine.scan``): a root
   that is missing, unreadable, or empty while it held photos (an unmounted drive) is
   unavailable and keeps its entries, and so do entries under a folder that could not be read.
   Paths the walk had to skip (unreadable folders, dangling links, link loops, paths too long)
   are stored with their reason and listed with the unreadable photos.
2. resolve: vanished entries that no new file can be (no new file of their size, or an old
   key) leave the catalog in one transaction.
3. encode: decode on a thread pool a couple of batches ahead of the model, encode each batch on
   the model's device (a run of at least ``engine.frozen.FROZEN_PHOTOS_MIN`` photos through the
   model's frozen photo graph, built while the first batches decode; on the CPU with torch's
   threads on the cores the decoding threads leave, ``engine.devices.cpu_threads_beside``), and
   write it in one transaction. Each file is read once: its bytes give
   the content key (a SHA-256 hash of the whole file) and are decoded from memory. A new file
   whose key is a vanished entry's is that photo moved or renamed (the row, and so every
   model's code, follows it, with no decoding when it has a code for this model); a changed
   file with its entry's key was only touched; otherwise its old codes are dropped. Vanished
   entries that no file claimed leave the catalog at the end of the run. A model with
   ``rerank_features`` (DSSA) also gives each photo's real-valued feature from the same forward
   pass, and a category-level model with fitted codes (``photo_values``) its unbinarised
   output, whose signs are the code (``engine.asymmetric`` ranks with them); either is stored
   (float16) in the same transaction as the code, and a photo that has a code but no feature
   (a catalog indexed before they were stored) is encoded again.
Unreadable files are recorded with their reason and skipped. A model error on a batch is retried
photo by photo; the photos it still fails on are recorded for that model with the reason (other
models still index them; the next run tries again) and the run goes on. Decoding memory is
bounded per photo and across threads (``engine.images.DecodeBudget``). Cancelling
(``cancel.set()``) stops between batches; committed batches stay, so the next run resumes with
what is left. The first batches are small (``FIRST_BATCH`` photos, then doubling up to the
batch size), so a cancel or a crash seconds into a run keeps what was encoded.

Content keys: ``sha256:`` and the first 32 hex digits (128 bits) of SHA-256 over the whole
file. SHA-256 rather than BLAKE2b: with the CPU's SHA extensions it hashed a 3.7 MB photo 2.5
times faster here (11 ms against 27 ms on a loaded core), small beside decoding it. Catalogs
indexed before hold keys of the size and the first and last 64 KiB only, which same-size scans
with white margins share: such an old key is never trusted to match. A file with an old key
gets a full one when it is next read (it changed, or a model encodes it); a photo with an old
key that is moved before then is encoded again under its new name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.catalog import Catalog, PhotoRow
from engine.codes import pack_codes
from engine.devices import cpu_threads_beside
from engine.errors import ImageLoadError
from engine.frozen import PhotoEncoder
from engine.images import MAX_DECODE_BYTES, DecodeBudget, load_photo, prepare_photo
from engine.library import Library
from engine.models import SketchHashModel, model_id
from engine.paths import display_path
from engine.scan import SkippedPath, is_gone, root_problem, walk_photos

__all__ = ["IndexProgress", "content_key", "index_library", "walk_photos"]

log = logging.getLogger(__name__)

KEY_PREFIX = "sha256:"
KEY_HEX_DIGITS = 32
WHOLE_READ_MAX = 64 << 20
"""Files up to this size are read into memory once, hashed and decoded from there; larger ones
are hashed while streamed and decoded from the file (a second read, to bound memory)."""
READ_CHUNK = 1 << 20
PREFETCH_BATCHES = 2
FIRST_BATCH = 8
"""Photos in a run's first batch; each next batch doubles up to ``batch_size``, so the first
photos are committed (kept by a cancel, searchable) within about a second of encoding."""
PROGRESS_EVERY_S = 0.25

_COUNTS = (
    "found",
    "unchanged",
    "moved",
    "removed",
    "to_encode",
    "encoded",
    "failed",
    "unavailable_roots",
    "skipped",
    "kept",
)


@dataclass(frozen=True)
class IndexProgress:
    """What an indexing run (``index_library``) has done so far: files found, skipped as unchanged,
    moved, removed, to encode and encoded, failures; ``phase`` says which part runs."""

    phase: str  # "scanning" | "encoding" | "done" | "cancelled"
    found: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    to_encode: int = 0
    encoded: int = 0
    failed: int = 0  # files that could not be read, and photos the model could not encode
    unavailable_roots: int = 0
    skipped: int = 0  # paths the walk could not use (unreadable folders, broken links, ...)
    kept: int = 0  # entries kept because their folder could not be read or is not available
    unavailable: tuple[tuple[str, str], ...] = ()  # (root folder, why it is not available)
    current: str | None = None
    rate: float = 0.0  # photos per second in the encoding phase
    eta_s: float | None = None
    elapsed_s: float = 0.0


@dataclass
class _Work:
    path: str
    root_id: int
    size: int
    mtime_ns: int
    row: PhotoRow | None = None
    key: str | None = None

    @property
    def changed(self) -> bool:
        return self.row is not None and (self.row.size, self.row.mtime_ns) != (
            self.size,
            self.mtime_ns,
        )


@dataclass
class _Prepared:
    """What a decode worker made of one file."""

    array: np.ndarray | None = None  # the model input, when the photo needs encoding
    error: str | None = None  # why the file could not be read or decoded
    moved_from: PhotoRow | None = None  # the vanished entry this new file is
    same_content: bool = False  # a changed file whose bytes are its entry's (only touched)


@dataclass
class _Run:
    started: float = field(default_factory=time.monotonic)
    encode_started: float | None = None
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unavailable: list[tuple[str, str]] = field(default_factory=list)

    def progress(self, phase: str, current: str | None = None) -> IndexProgress:
        c = self.counts
        now = time.monotonic()
        rate, eta = 0.0, None
        done = c["encoded"] + c["failed"]
        if self.encode_started is not None and now > self.encode_started and done:
            rate = done / (now - self.encode_started)
            eta = max(0, c["to_encode"] - done) / rate
        return IndexProgress(
            phase=phase,
            current=current,
            rate=rate,
            eta_s=eta,
            elapsed_s=now - self.started,
            unavailable=tuple(self.unavailable),
            **{k: c[k] for k in _COUNTS},
        )


class _Moves:
    """Vanished entries that a new file may turn out to be, by full content key; each is
    claimed once, by the decode worker that reads a file with its key."""

    def __init__(self, rows: Sequence[PhotoRow]) -> None:
        self._by_key: dict[str, list[PhotoRow]] = defaultdict(list)
        for row in rows:
            self._by_key[row.content_key].append(row)
        self._lock = threading.Lock()

    def claim(self, key: str) -> PhotoRow | None:
        with self._lock:
            rows = self._by_key.get(key)
            return rows.pop() if rows else None

    def unclaimed(self) -> list[PhotoRow]:
        with self._lock:
            return [row for rows in self._by_key.values() for row in rows]


def is_full_key(key: str | None) -> bool:
    """True for a hash of the whole content; False for a catalog's older, partial keys."""
    return key is not None and key.startswith(KEY_PREFIX)


def read_photo_file(path: str | os.PathLike, size: int) -> tuple[bytes | None, str]:
    """(the file's bytes, its content key) from one read; the bytes are None for a file larger
    than ``WHOLE_READ_MAX``, which is hashed in chunks instead."""
    digest = hashlib.sha256()
    data = None
    with open(path, "rb") as fh:
        if size <= WHOLE_READ_MAX:
            data = fh.read()
            digest.update(data)
        else:
            while chunk := fh.read(READ_CHUNK):
                digest.update(chunk)
    return data, KEY_PREFIX + digest.hexdigest()[:KEY_HEX_DIGITS]


def content_key(path: str | os.PathLike) -> str:
    """The content key of a file: a hash of all its bytes."""
    return read_photo_file(path, WHOLE_READ_MAX + 1)[1]


def _ramped_batches(todo: list, batch_size: int) -> list[list]:
    """``todo`` cut in batches of ``FIRST_BATCH``, twice that, ... up to ``batch_size``."""
    batches, start, size = [], 0, min(FIRST_BATCH, batch_size)
    while start < len(todo):
        batches.append(todo[start : start + size])
        start += size
        size = min(2 * size, batch_size)
    return batches


def index_library(
    library: Library,
    model: SketchHashModel,
    *,
    roots: Sequence[str | os.PathLike] | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    cancel: threading.Event | None = None,
    decode_budget: int = MAX_DECODE_BYTES,
) -> Iterator[IndexProgress]:
    """Bring the catalog's codes for ``model`` up to date with the library's folders, as the
    library's one writer: while another process indexes it, this raises ``LibraryBusyError``
    (naming that process) at the first step. ``decode_budget``: bytes that the decodes running
    at once may take together (``DecodeBudget``)."""
    with library.writing("indexing"):
        yield from _index_library(
            library,
            model,
            roots=roots,
            batch_size=batch_size,
            workers=workers,
            cancel=cancel,
            decode_budget=decode_budget,
        )


def _index_library(
    library: Library,
    model: SketchHashModel,
    *,
    roots: Sequence[str | os.PathLike] | None,
    batch_size: int,
    workers: int | None,
    cancel: threading.Event | None,
    decode_budget: int,
) -> Iterator[IndexProgress]:
    catalog = library.catalog
    model.eval()  # inference only; also lets a searcher share the model from another thread
    mid = model_id(model)
    catalog.register_model(mid, model.method, model.bits)
    wanted = None if roots is None else {Path(r).expanduser().resolve() for r in roots}
    selected = [(rid, p) for rid, p in catalog.roots() if wanted is None or p in wanted]
    cancel = cancel or threading.Event()
    run = _Run()
    workers = workers or min(8, max(2, os.cpu_count() or 2))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="sketch-search-decode")
    try:
        coded = catalog.coded_ids(mid)
        if model.rerank_features or model.photo_values:  # coded before they were stored
            coded &= catalog.featured_ids(mid)
        todo: list[_Work] = []
        vanished: list[PhotoRow] = []
        skipped: dict[int, list[SkippedPath]] = {}
        last = time.monotonic()
        for rid, root in selected:
            known = catalog.photos_under(rid)
            problem = root_problem(root, has_photos=bool(known))
            if problem is not None:
                log.warning(
                    "%s is not available: %s; its %d photos are kept.",
                    display_path(root),
                    problem,
                    len(known),
                )
                run.unavailable.append((str(root), problem))
                run.counts["unavailable_roots"] += 1
                run.counts["kept"] += len(known)
                continue
            seen: set[str] = set()
            skipped[rid] = []
            for path, size, mtime in walk_photos(root, skipped[rid]):
                run.counts["found"] += 1
                seen.add(path)
                row = known.get(path)
                unchanged = row is not None and (row.size, row.mtime_ns) == (size, mtime)
                if unchanged and (row.status == "failed" or row.id in coded):
                    run.counts["unchanged"] += 1
                else:
                    todo.append(_Work(path, rid, size, mtime, row))
                if time.monotonic() - last > PROGRESS_EVERY_S:
                    last = time.monotonic()
                    if cancel.is_set():
                        yield run.progress("cancelled")
                        return
                    yield run.progress("scanning", path)
            run.counts["skipped"] += len(skipped[rid])
            unreadable = [s.path for s in skipped[rid] if s.folder]
            for path, row in known.items():
                if path in seen:
                    continue
                if is_gone(path, unreadable):
                    vanished.append(row)
                else:
                    run.counts["kept"] += 1

        moves = _resolve(catalog, todo, vanished, skipped, run)
        yield run.progress("scanning")
        budget = DecodeBudget(decode_budget)
        with cpu_threads_beside(workers, model.device):  # the model on the cores left over
            yield from _encode(
                catalog, model, mid, todo, coded, moves, budget, batch_size, pool, cancel, run
            )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _resolve(
    catalog: Catalog,
    todo: list[_Work],
    vanished: list[PhotoRow],
    skipped: dict[int, list[SkippedPath]],
    run: _Run,
) -> _Moves:
    """Remove the vanished entries that no new file can be, record the skipped paths, in one
    transaction; return the vanished entries a new file may still turn out to be."""
    new_sizes = {w.size for w in todo if w.row is None}
    maybe_moved = [r for r in vanished if is_full_key(r.content_key) and r.size in new_sizes]
    candidates = {r.id for r in maybe_moved}
    gone = [r.id for r in vanished if r.id not in candidates]
    with catalog.transaction("indexing") as tx:
        catalog.delete_photos(tx, gone)
        for rid, paths in skipped.items():
            catalog.replace_skipped(tx, rid, [(s.path, s.reason) for s in paths])
    run.counts["removed"] = len(gone)
    run.counts["to_encode"] = len(todo)
    return _Moves(maybe_moved)


def _prepare(
    work: _Work, size: int, coded: set[int], moves: _Moves, budget: DecodeBudget
) -> _Prepared:
    """Read the file once: its key says whether it is a moved or touched photo that needs no
    encoding; otherwise decode the same bytes into the model input. Runs on a worker thread."""
    name = os.path.basename(work.path)
    try:
        data, work.key = read_photo_file(work.path, work.size)
    except FileNotFoundError:
        return _Prepared(error=f"{name} does not exist any more (moved or deleted?).")
    except PermissionError:
        return _Prepared(error=f"No permission to read {name}; check the file's access.")
    except OSError as exc:
        return _Prepared(error=f"{name} cannot be read ({exc.strerror or exc}); check its disk.")
    out = _Prepared()
    entry = None  # a catalog entry known to hold exactly these bytes
    if work.row is None:
        entry = out.moved_from = moves.claim(work.key)
    elif work.changed and work.row.content_key == work.key:
        entry, out.same_content = work.row, True
    if entry is not None and (entry.status == "failed" or entry.id in coded):
        return out  # the entry already says all there is to say about these bytes
    try:
        photo = load_photo(work.path, target_size=size, budget=budget, data=data)
        out.array = prepare_photo(photo, size)
    except ImageLoadError as exc:
        out.error = str(exc)
    return out


_EmbedFn = Callable[[np.ndarray], np.ndarray]  # prepared photos to float (n, K) outputs


def _run_model(model: SketchHashModel, arrays: list[np.ndarray], embed: _EmbedFn):
    """(codes, features or None) of a batch; a result of the wrong length is an error too."""
    batch = np.stack(arrays)
    if model.rerank_features:
        codes, features = model.encode_photos_and_features(batch)
    else:
        values = embed(batch)
        codes, features = pack_codes(values), values if model.photo_values else None
    if len(codes) != len(arrays) or (features is not None and len(features) != len(arrays)):
        raise ValueError(f"the model gave {len(codes)} codes for {len(arrays)} photos")
    return codes, features


def _encode_safely(
    model: SketchHashModel, arrays: list[np.ndarray], embed: _EmbedFn
) -> list[tuple[np.ndarray, np.ndarray | None] | str]:
    """Per photo, (code, feature or None) or why the model could not encode it. A batch that
    fails is retried photo by photo, so one bad photo costs only itself."""
    try:
        codes, features = _run_model(model, arrays, embed)
    except Exception as exc:  # a model bug on an unusual photo must not stop the run
        if len(arrays) > 1:
            log.warning(
                "The model failed on a batch of %d photos (%s: %s); encoding them one by one.",
                len(arrays),
                type(exc).__name__,
                exc,
            )
            return [r for a in arrays for r in _encode_safely(model, [a], embed)]
        log.warning("The model failed on a photo", exc_info=True)
        return [
            f"The {model.method} model could not encode this photo ({type(exc).__name__}: "
            f"{exc}). Other models still index it, and the next run tries again; please "
            "report this as a SketchSearch bug."
        ]
    return [(codes[i], None if features is None else features[i]) for i in range(len(arrays))]


def _encode(
    catalog: Catalog,
    model: SketchHashModel,
    mid: str,
    todo: list[_Work],
    coded: set[int],
    moves: _Moves,
    budget: DecodeBudget,
    batch_size: int,
    pool: ThreadPoolExecutor,
    cancel: threading.Event,
    run: _Run,
) -> Iterator[IndexProgress]:
    size = model.photo_size
    batches = iter(_ramped_batches(todo, batch_size))
    in_flight: deque[tuple[list[_Work], list[Future]]] = deque()

    def submit_next() -> None:
        batch = next(batches, None)
        if batch is not None:
            futures = [pool.submit(_prepare, w, size, coded, moves, budget) for w in batch]
            in_flight.append((batch, futures))

    for _ in range(PREFETCH_BATCHES):
        submit_next()
    # frozen for a long run (engine.frozen); built while the first batches decode
    embed = PhotoEncoder.for_run(model, len(todo))
    run.encode_started = time.monotonic()
    while in_flight:
        if cancel.is_set():
            for _, futures in in_flight:
                for future in futures:
                    future.cancel()
            yield run.progress("cancelled")
            return
        batch, futures = in_flight.popleft()
        submit_next()
        prepared = [f.result() for f in futures]
        to_code = [p.array for p in prepared if p.array is not None]
        results = iter(_encode_safely(model, to_code, embed) if to_code else [])
        with catalog.transaction("indexing") as tx:
            for work, prep in zip(batch, prepared, strict=True):
                _write(
                    catalog,
                    tx,
                    mid,
                    work,
                    prep,
                    next(results) if prep.array is not None else None,
                    run,
                )
        yield run.progress("encoding", batch[-1].path)
    leftovers = [row.id for row in moves.unclaimed()]
    if leftovers:
        with catalog.transaction("indexing") as tx:
            catalog.delete_photos(tx, leftovers)
        run.counts["removed"] += len(leftovers)
    yield run.progress("done")


def _write(catalog: Catalog, tx, mid: str, work: _Work, prep: _Prepared, result, run: _Run) -> None:
    """Record one file of a batch in the batch's transaction."""
    counts = run.counts
    entry = prep.moved_from or work.row
    if prep.moved_from is not None:
        catalog.move_photo(tx, entry.id, work.path, work.root_id, work.size, work.mtime_ns)
        counts["moved"] += 1
    elif work.changed:
        if prep.same_content:
            catalog.move_photo(tx, entry.id, work.path, work.root_id, work.size, work.mtime_ns)
        else:
            catalog.drop_codes(tx, entry.id)  # new content: every model's code is stale
    if prep.error is not None:
        catalog.upsert_photo(
            tx, work.path, work.root_id, work.size, work.mtime_ns, work.key, "failed", prep.error
        )
        counts["failed"] += 1
        log.info("Skipped %s: %s", display_path(work.path), prep.error)
        return
    if prep.array is None:  # moved or touched, and its entry needs nothing more
        counts["to_encode"] -= 1
        if prep.moved_from is None:
            counts["unchanged"] += 1
        return
    photo_id = catalog.upsert_photo(tx, work.path, work.root_id, work.size, work.mtime_ns, work.key)
    if isinstance(result, str):
        catalog.put_encode_failures(tx, mid, [(photo_id, result)])
        counts["failed"] += 1
        return
    code, feature = result
    catalog.put_codes(tx, mid, [photo_id], code[None])
    if feature is not None:
        catalog.put_features(tx, mid, [photo_id], feature[None])
    catalog.clear_encode_failures(tx, mid, [photo_id])
    counts["encoded"] += 1
