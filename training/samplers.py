"""Batch samplers: class-balanced batches (category level) and triplets (fine-grained).

Every sampler is a pure function of its inputs and a ``torch.Generator``; the trainer seeds one
per epoch from (seed, epoch), so an epoch's batches can be rebuilt exactly when resuming.

- ``class_balanced_batches``: each batch holds ``classes_per_batch`` classes with ``per_class``
  sketches and ``per_class`` photos of each (drawn without replacement within an epoch where the
  class has enough, with replacement where it has fewer). Classes are visited in shuffled rounds,
  so every class is seen about equally often. The number of batches per epoch is
  ceil(sketches / (classes_per_batch * per_class)).
- ``triplets``: (sketch, positive photo, negative photo). From the data set's human annotations
  (``triplets.json``) where a sketch has them, else positive = its own photo and a random other
  negative; a sketch drawn of no photo (own photo -1: extra data, doodles) and without
  annotations has no positive and is left out. ``hard_negative_candidates`` gives, per sketch,
  the photos the current model ranks closest (excluding the positive); with it, a negative is
  drawn from those candidates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from engine.errors import ConfigError


def _perm(n: int, generator: torch.Generator) -> list[int]:
    return torch.randperm(n, generator=generator).tolist()


def _draw(pool: list[int], count: int, cursor: dict, key: int, generator: torch.Generator):
    """``count`` items of ``pool``: through fresh shuffles (no repeat until the pool is used up);
    a pool smaller than ``count`` is drawn with replacement."""
    if len(pool) < count:
        return [pool[int(i)] for i in torch.randint(len(pool), (count,), generator=generator)]
    taken: list[int] = []
    while len(taken) < count:
        order, pos = cursor.get(key, ([], 0))
        if pos >= len(order):
            order, pos = [pool[i] for i in _perm(len(pool), generator)], 0
        need = min(count - len(taken), len(order) - pos)
        taken.extend(order[pos : pos + need])
        cursor[key] = (order, pos + need)
    return taken


def class_balanced_batches(
    sketch_labels: Sequence[int] | np.ndarray,
    photo_labels: Sequence[int] | np.ndarray,
    classes_per_batch: int,
    per_class: int,
    generator: torch.Generator,
    num_batches: int | None = None,
) -> list[tuple[list[int], list[int]]]:
    """One epoch of (sketch indices, photo indices) batches, class-balanced, aligned by class."""
    if classes_per_batch < 1 or per_class < 1:
        raise ConfigError("classes_per_batch and per_class must be at least 1.")
    sketch_labels = np.asarray(sketch_labels)
    photo_labels = np.asarray(photo_labels)
    classes = sorted(set(sketch_labels.tolist()) & set(photo_labels.tolist()))
    if not classes:
        raise ConfigError("No class has both sketches and photos to train on.")
    by_sketch = {c: np.flatnonzero(sketch_labels == c).tolist() for c in classes}
    by_photo = {c: np.flatnonzero(photo_labels == c).tolist() for c in classes}
    per_batch_classes = min(classes_per_batch, len(classes))
    if num_batches is None:
        num_batches = max(1, math.ceil(len(sketch_labels) / (per_batch_classes * per_class)))
    cursor_s: dict = {}
    cursor_p: dict = {}
    rounds: list[int] = []
    batches = []
    for _ in range(num_batches):
        chosen = []
        while len(chosen) < per_batch_classes:
            if not rounds:
                rounds = [classes[i] for i in _perm(len(classes), generator)]
            c = rounds.pop()
            if c not in chosen:
                chosen.append(c)
        sketches, photos = [], []
        for c in chosen:
            sketches.extend(_draw(by_sketch[c], per_class, cursor_s, c, generator))
            photos.extend(_draw(by_photo[c], per_class, cursor_p, c, generator))
        batches.append((sketches, photos))
    return batches


def triplets(
    sketch_photo: Sequence[int] | np.ndarray,
    n_photos: int,
    generator: torch.Generator,
    annotated: Mapping[int, Sequence[tuple[int, int]]] | None = None,
    hard_negative_candidates: Mapping[int, Sequence[int]] | None = None,
) -> list[tuple[int, int, int]]:
    """One epoch of (sketch, positive photo, negative photo) index triplets, one per sketch that
    has a positive."""
    sketch_photo = np.asarray(sketch_photo)
    if n_photos < 2:
        raise ConfigError("Triplet training needs at least two photos.")
    out = []
    for s in _perm(len(sketch_photo), generator):
        pairs = (annotated or {}).get(s)
        if pairs:
            pos, neg = pairs[int(torch.randint(len(pairs), (1,), generator=generator))]
        else:
            pos = int(sketch_photo[s])
            if pos < 0:
                continue
            candidates = (hard_negative_candidates or {}).get(s)
            candidates = [c for c in candidates or () if c != pos]
            if candidates:
                neg = candidates[int(torch.randint(len(candidates), (1,), generator=generator))]
            else:
                neg = int(torch.randint(n_photos - 1, (1,), generator=generator))
                neg += neg >= pos
        out.append((s, int(pos), int(neg)))
    return out


def hard_negative_candidates(
    sketch_embeddings: np.ndarray,
    photo_embeddings: np.ndarray,
    sketch_photo: Sequence[int] | np.ndarray,
    top: int = 10,
) -> dict[int, list[int]]:
    """Per sketch, the ``top`` photos nearest to it (Euclidean), its own photo excluded."""
    s = np.asarray(sketch_embeddings, np.float64)
    p = np.asarray(photo_embeddings, np.float64)
    dist = (s**2).sum(1)[:, None] - 2 * s @ p.T + (p**2).sum(1)[None, :]
    own = np.asarray(sketch_photo)
    valid = own >= 0
    dist[np.flatnonzero(valid), own[valid]] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")[:, :top]
    return {i: order[i].tolist() for i in range(len(s))}
