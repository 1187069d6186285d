"""Decode a data set once into in-memory uint8 arrays, through the engine's own preprocessing.

Photos go through ``engine.images.load_photo`` + ``prepare_photo`` at the model's photo size, as
the indexer does; sketches through ``engine.sketch.load_sketch`` (the one canonical normalisation
at ``SKETCH_SIZE``), then are resized to the model's sketch size with the same antialiased
bilinear resize the model applies at its numpy boundary, and stored as uint8 (training).
Evaluation asks for ``SKETCH_SIZE`` instead (``training.evaluate.prepare_for_search``): the
canonical sketch itself, which the model resizes unrounded, exactly as a search. A sketch
given as strokes (a QuickDraw doodle, ``SketchItem.strokes``) goes through
``engine.sketch.rasterize``, exactly as a drawing on the canvas does, then the same resize
(about 10 ms a drawing on one core). Decoding runs on a small thread pool (PIL and numpy
release the GIL); a data set of a few thousand images at 160-256 px fits in a few hundred MB.

``prepare_arrays`` is a generator (progress, then the arrays as its return value) so long
decoding can be shown and cancelled; a file that cannot be decoded stops it with a
``DatasetError`` naming the files, before any training starts.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.errors import Cancelled, DatasetError, ImageLoadError, SketchError
from engine.images import load_photo, prepare_photo
from engine.sketch import SKETCH_SIZE, load_sketch, rasterize
from training.data import SketchDataset, SketchItem

log = logging.getLogger(__name__)

_CHUNK = 64


@dataclass(frozen=True)
class PrepareProgress:
    what: str  # "photos", "sketches", "doodles" or "edge maps"
    done: int
    total: int


@dataclass(frozen=True)
class PreparedData:
    """uint8 arrays of a data set view, aligned with ``dataset.photos`` / ``dataset.sketches``."""

    dataset: SketchDataset
    photos: np.ndarray  # (n, P, P, 3)
    sketches: np.ndarray  # (m, S, S)
    photo_labels: np.ndarray  # int64 (n,)
    sketch_labels: np.ndarray  # int64 (m,)
    sketch_photo: np.ndarray  # int64 (m,): index into photos of each sketch's own photo (-1: none)
    sketch_source: np.ndarray | None = None  # str (m,): SketchItem.source ("" main data set)

    def __post_init__(self) -> None:
        if self.sketch_source is None:
            sources = np.array([s.source for s in self.dataset.sketches], dtype=str)
            object.__setattr__(self, "sketch_source", sources.reshape(len(self.sketch_labels)))


def read_photo(path: Path, size: int) -> np.ndarray:
    """One photo as the indexer prepares it: uint8 (size, size, 3)."""
    return prepare_photo(load_photo(path, target_size=size), size)


def read_sketch(path: Path, size: int) -> np.ndarray:
    """One sketch file normalised at SKETCH_SIZE, then resized like the model boundary does."""
    return resize_sketch(load_sketch(path), size)


def read_strokes(item: SketchItem, size: int) -> np.ndarray:
    """A sketch given as strokes, rasterised as the canvas's are, resized like a sketch file."""
    return resize_sketch(rasterize(item.strokes), size)


def resize_sketch(canonical: np.ndarray, size: int) -> np.ndarray:
    """A canonical (SKETCH_SIZE) sketch resized like the model boundary does: uint8 (size, size)."""
    if size == SKETCH_SIZE:
        return canonical
    t = torch.from_numpy(np.ascontiguousarray(canonical)).float().div_(255.0)[None, None]
    t = torch.nn.functional.interpolate(
        t, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return t[0, 0].mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def read_edge_map(path: Path, size: int) -> np.ndarray:
    """A released edge map prepared like its photo (centre square): uint8 (size, size)."""
    return read_photo(path, size).mean(axis=2).round().astype(np.uint8)


def released_edge_maps(
    dataset: SketchDataset, size: int, cancel: threading.Event | None = None
) -> Generator[PrepareProgress, None, np.ndarray]:
    """uint8 (n, size, size) edge maps of ``dataset.photos`` from its ``edges/`` folder."""
    missing = [p.key for p in dataset.photos if p.key not in dataset.edges]
    if missing:
        raise DatasetError(
            f"{len(missing)} photo(s) of {dataset.root} have no released edge map in edges/ "
            f"(e.g. {', '.join(missing[:5])}); use the engine's edge maps instead."
        )
    paths = [dataset.edges[p.key] for p in dataset.photos]
    return (yield from decode_all(paths, read_edge_map, size, "edge maps", cancel))


def decode_all(
    paths: Sequence[Path],
    read,
    size: int,
    what: str,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> Generator[PrepareProgress, None, np.ndarray]:
    """Decode ``paths`` with ``read(path, size)`` on a thread pool; errors name every bad file.

    ``paths`` may be SketchItems (read by ``read_strokes``): errors name their keys."""
    workers = workers or min(4, os.cpu_count() or 1)
    out: list[np.ndarray | None] = [None] * len(paths)
    bad: list[str] = []

    def one(i: int) -> None:
        try:
            out[i] = read(paths[i], size)
        except (ImageLoadError, SketchError, OSError) as exc:
            name = paths[i].key if isinstance(paths[i], SketchItem) else paths[i]
            bad.append(f"{name} ({exc})")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), _CHUNK):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"Preparing {what} was cancelled.")
            list(pool.map(one, range(start, min(start + _CHUNK, len(paths)))))
            yield PrepareProgress(what, min(start + _CHUNK, len(paths)), len(paths))
    if bad:
        shown = "; ".join(sorted(bad)[:5])
        raise DatasetError(
            f"{len(bad)} {what} file(s) cannot be decoded: {shown}. Fix or remove them."
        )
    if not paths:
        return np.empty((0, size, size, 3) if what == "photos" else (0, size, size), np.uint8)
    return np.stack(out)


def prepare_arrays(
    dataset: SketchDataset,
    photo_size: int,
    sketch_size: int,
    cancel: threading.Event | None = None,
) -> Generator[PrepareProgress, None, PreparedData]:
    """Decode every photo and sketch of ``dataset``; yields progress, returns PreparedData.

    Sketch files and sketches given as strokes (doodles) are decoded as two stages, so the
    progress says which is slow."""
    photos = yield from decode_all(
        [p.path for p in dataset.photos], read_photo, photo_size, "photos", cancel
    )
    drawn = [i for i, s in enumerate(dataset.sketches) if s.strokes is not None]
    files = [i for i, s in enumerate(dataset.sketches) if s.strokes is None]
    sketches = np.empty((len(dataset.sketches), sketch_size, sketch_size), np.uint8)
    sketches[files] = yield from decode_all(
        [dataset.sketches[i].path for i in files], read_sketch, sketch_size, "sketches", cancel
    )
    if drawn:
        sketches[drawn] = yield from decode_all(
            [dataset.sketches[i] for i in drawn], read_strokes, sketch_size, "doodles", cancel
        )
    index = {p.key: i for i, p in enumerate(dataset.photos)}
    return PreparedData(
        dataset=dataset,
        photos=photos,
        sketches=sketches,
        photo_labels=np.array([p.label for p in dataset.photos], dtype=np.int64),
        sketch_labels=np.array([s.label for s in dataset.sketches], dtype=np.int64),
        sketch_photo=np.array([index.get(s.photo_key, -1) for s in dataset.sketches], np.int64),
    )


def photo_batch(photos: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (n, P, P, 3) to float (n, 3, P, P) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(photos)).to(device)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def sketch_batch(sketches: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (n, S, S) to float (n, 1, S, S) in [0, 1] (white paper = 1)."""
    t = torch.from_numpy(np.ascontiguousarray(sketches)).to(device)
    return t[:, None].float().div_(255.0)
