"""Incremental indexing of photo folders: a generator that yields progress and can be cancelled.

Steps of one run:
1. scan: walk each root (missing roots, e.g. an unmounted drive, are skipped and their photos
   kept), compare each photo file with its catalog row by (size, mtime);
2. resolve: a new file whose content key matches a file that vanished is a move or rename (the
   row, and so every model's code, follows it); a changed file whose content key is unchanged was
   only touched; vanished files that were not moved leave the catalog;
3. encode: decode on a thread pool (EXIF, JPEG draft, pixel cap) a couple of batches ahead of the
   model, encode each batch on the model's device, and write it in one transaction. A model
   with ``rerank_features`` (DSSA) also gives each photo's real-valued feature from the same
   forward pass; it is stored (float16) in the same transaction as the code, and a photo that
   has a code but no feature (a catalog indexed before features were stored) is encoded again.
Unreadable files are recorded with their reason and skipped. Cancelling (``cancel.set()``) stops
between batches; committed batches stay, so the next run resumes with what is left.

The content key is a BLAKE2b digest of the size and the first and last 64 KiB: cheap, and
enough to recognise the same photo file under another name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.catalog import Catalog, PhotoRow
from engine.errors import ImageLoadError
from engine.images import PHOTO_EXTENSIONS, load_photo, prepare_photo
from engine.library import Library
from engine.models import SketchHashModel, model_id

log = logging.getLogger(__name__)

KEY_CHUNK = 64 * 1024
PREFETCH_BATCHES = 2
PROGRESS_EVERY_S = 0.25


@dataclass(frozen=True)
class IndexProgress:
    phase: str  # "scanning" | "encoding" | "done" | "cancelled"
    found: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    to_encode: int = 0
    encoded: int = 0
    failed: int = 0
    unavailable_roots: int = 0
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


@dataclass
class _Run:
    started: float = field(default_factory=time.monotonic)
    encode_started: float | None = None
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

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
            **{
                k: c[k]
                for k in (
                    "found",
                    "unchanged",
                    "moved",
                    "removed",
                    "to_encode",
                    "encoded",
                    "failed",
                    "unavailable_roots",
                )
            },
        )


def content_key(path: str | os.PathLike, size: int | None = None) -> str:
    size = os.path.getsize(path) if size is None else size
    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    with open(path, "rb") as fh:
        digest.update(fh.read(KEY_CHUNK))
        if size > 2 * KEY_CHUNK:
            fh.seek(-KEY_CHUNK, os.SEEK_END)
            digest.update(fh.read(KEY_CHUNK))
    return digest.hexdigest()


def _safe_key(work: _Work) -> str | None:
    try:
        return content_key(work.path, work.size)
    except OSError:
        return None  # the decode step records the reason


def walk_photos(root: Path) -> Iterator[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every photo file under root, in a stable order; hidden
    folders and files are skipped, unreadable subfolders logged and skipped."""

    def warn(exc: OSError) -> None:
        log.warning("Cannot read %s: %s", exc.filename, exc.strerror)

    for folder, dirs, files in os.walk(root, onerror=warn):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in PHOTO_EXTENSIONS:
                continue
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError as exc:
                warn(exc)
                continue
            yield path, st.st_size, st.st_mtime_ns


def index_library(
    library: Library,
    model: SketchHashModel,
    *,
    roots: Sequence[str | os.PathLike] | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[IndexProgress]:
    """Bring the catalog's codes for ``model`` up to date with the library's folders, as the
    library's one writer: while another process indexes it, this raises ``LibraryBusyError``
    (naming that process) at the first step."""
    with library.writing("indexing"):
        yield from _index_library(
            library, model, roots=roots, batch_size=batch_size, workers=workers, cancel=cancel
        )


def _index_library(
    library: Library,
    model: SketchHashModel,
    *,
    roots: Sequence[str | os.PathLike] | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[IndexProgress]:
    """Bring the catalog's codes for ``model`` up to date with the library's folders."""
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
        if model.rerank_features:  # a photo coded before features were stored gets them now
            coded &= catalog.featured_ids(mid)
        todo: list[_Work] = []
        vanished: dict[str | None, list[PhotoRow]] = defaultdict(list)
        last = time.monotonic()
        for rid, root in selected:
            if not root.is_dir():
                log.warning("%s is not available (unmounted?); its photos are kept.", root)
                run.counts["unavailable_roots"] += 1
                continue
            known = catalog.photos_under(rid)
            seen: set[str] = set()
            for path, size, mtime in walk_photos(root):
                run.counts["found"] += 1
                seen.add(path)
                row = known.get(path)
                unchanged = row is not None and (row.size, row.mtime_ns) == (size, mtime)
                if unchanged and (row.status == "failed" or row.id in coded):
                    run.counts["unchanged"] += 1
                else:
                    key = row.content_key if row else None
                    todo.append(_Work(path, rid, size, mtime, row, key))
                if time.monotonic() - last > PROGRESS_EVERY_S:
                    last = time.monotonic()
                    if cancel.is_set():
                        yield run.progress("cancelled")
                        return
                    yield run.progress("scanning", path)
            for path, row in known.items():
                if path not in seen:
                    vanished[row.content_key].append(row)

        encode = _resolve(catalog, todo, vanished, coded, pool, run)
        yield run.progress("scanning")
        yield from _encode(catalog, model, mid, encode, batch_size, pool, cancel, run)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _resolve(
    catalog: Catalog,
    todo: list[_Work],
    vanished: dict[str | None, list[PhotoRow]],
    coded: set[int],
    pool: ThreadPoolExecutor,
    run: _Run,
) -> list[_Work]:
    """Apply moves, touches and removals in one transaction; return what needs encoding."""
    changed = [w for w in todo if w.row and (w.row.size, w.row.mtime_ns) != (w.size, w.mtime_ns)]
    new = [w for w in todo if w.row is None] if vanished else []
    for work, key in zip(changed + new, pool.map(_safe_key, changed + new), strict=True):
        work.key = key
    encode: list[_Work] = []
    with catalog.transaction() as tx:
        for work in todo:
            row = work.row
            if row is None:
                moved_from = vanished.get(work.key) if work.key else None
                if moved_from:
                    row = moved_from.pop()
                    catalog.move_photo(
                        tx, row.id, work.path, work.root_id, work.size, work.mtime_ns
                    )
                    run.counts["moved"] += 1
                    if row.status == "failed" or row.id in coded:
                        continue
                encode.append(work)
            elif (row.size, row.mtime_ns) != (work.size, work.mtime_ns):
                if work.key is not None and work.key == row.content_key:
                    catalog.move_photo(
                        tx, row.id, work.path, work.root_id, work.size, work.mtime_ns
                    )
                    if row.status == "failed" or row.id in coded:
                        run.counts["unchanged"] += 1
                        continue
                else:
                    catalog.drop_codes(tx, row.id)
                encode.append(work)
            else:
                encode.append(work)
        gone = [row.id for rows in vanished.values() for row in rows]
        catalog.delete_photos(tx, gone)
    run.counts["removed"] = len(gone)
    run.counts["to_encode"] = len(encode)
    return encode


def _decode(work: _Work, size: int) -> tuple[np.ndarray | None, str | None]:
    try:
        if work.key is None:
            work.key = content_key(work.path, work.size)
        return prepare_photo(load_photo(work.path, target_size=size), size), None
    except ImageLoadError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"cannot read the file: {exc.strerror or exc}"


def _encode(
    catalog: Catalog,
    model: SketchHashModel,
    mid: str,
    encode: list[_Work],
    batch_size: int,
    pool: ThreadPoolExecutor,
    cancel: threading.Event,
    run: _Run,
) -> Iterator[IndexProgress]:
    size = model.photo_size
    batches = iter([encode[i : i + batch_size] for i in range(0, len(encode), batch_size)])
    in_flight: deque[tuple[list[_Work], list[Future]]] = deque()

    def submit_next() -> None:
        batch = next(batches, None)
        if batch is not None:
            in_flight.append((batch, [pool.submit(_decode, w, size) for w in batch]))

    for _ in range(PREFETCH_BATCHES):
        submit_next()
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
        decoded = [f.result() for f in futures]
        good = [(w, arr) for w, (arr, _) in zip(batch, decoded, strict=True) if arr is not None]
        bad = [(w, err) for w, (arr, err) in zip(batch, decoded, strict=True) if arr is None]
        codes, features = None, None
        if good and model.rerank_features:
            codes, features = model.encode_photos_and_features(np.stack([a for _, a in good]))
        elif good:
            codes = model.encode_photos(np.stack([a for _, a in good]))
        with catalog.transaction() as tx:
            ids = [
                catalog.upsert_photo(tx, w.path, w.root_id, w.size, w.mtime_ns, w.key)
                for w, _ in good
            ]
            if codes is not None:
                catalog.put_codes(tx, mid, ids, codes)
            if features is not None:
                catalog.put_features(tx, mid, ids, features)
            for w, err in bad:
                catalog.upsert_photo(
                    tx, w.path, w.root_id, w.size, w.mtime_ns, w.key, status="failed", error=err
                )
        run.counts["encoded"] += len(good)
        run.counts["failed"] += len(bad)
        for w, err in bad:
            log.info("Skipped %s: %s", w.path, err)
        yield run.progress("encoding", batch[-1].path)
    yield run.progress("done")
