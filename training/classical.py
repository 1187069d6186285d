"""The classical baseline that needs no training: HOG of the sketch vs HOG of the photo's edge map.

As in the papers' tables (e.g. the HOG rows of Sketchy, DSH, DSSA): a sketch and a photo's edge
map are both line drawings, so a gradient-orientation histogram compares them without learning.
Choices:
- both inputs at ``HOG_SIZE`` = 128 px; photos become edge maps with ``engine.edges.edge_maps``
  (the same edge maps the edge-branch methods use), white paper and dark lines like sketches;
- the HOG of ``engine.hog`` (9 orientations, 16 x 16-pixel cells, 2 x 2-cell blocks, L2-Hys:
  1764 dimensions);
- ranking by cosine similarity of the HOG vectors (the "real-valued" figure), and, so the binary
  figure goes through the same index as the learned models, 64-bit codes from the signs of a
  fixed random Gaussian projection of the mean-centred vectors (sign random projections, an LSH
  of the cosine), centred on the mean of the gallery.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from engine.codes import pack_codes
from engine.edges import edge_maps
from engine.hog import HOG_SIZE, hog_features
from engine.hog import resize as _resize

log = logging.getLogger(__name__)

HOG_BITS = 64


def sketch_hog(sketches: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """HOG of uint8 (n, S, S) normalised sketches."""
    out = []
    for i in range(0, len(sketches), batch_size):
        t = torch.from_numpy(np.ascontiguousarray(sketches[i : i + batch_size]))[:, None]
        t = _resize(t.float() / 255.0, HOG_SIZE)
        out.append(hog_features(t[:, 0].numpy()))
    return np.concatenate(out) if out else np.empty((0, 0), np.float32)


def photo_hog(photos: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """HOG of the edge maps of uint8 (n, P, P, 3) prepared photos."""
    out = []
    for i in range(0, len(photos), batch_size):
        t = torch.from_numpy(np.ascontiguousarray(photos[i : i + batch_size]))
        t = _resize(t.permute(0, 3, 1, 2).float() / 255.0, HOG_SIZE)
        with torch.no_grad():
            edges = edge_maps(t)
        out.append(hog_features(edges[:, 0].clamp(0, 1).numpy()))
    return np.concatenate(out) if out else np.empty((0, 0), np.float32)


def hog_codes(
    sketch_features: np.ndarray, photo_features: np.ndarray, bits: int = HOG_BITS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Packed sign-random-projection codes of both sides, centred on the gallery mean."""
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((photo_features.shape[1], bits)).astype(np.float32)
    centre = photo_features.mean(axis=0, keepdims=True)
    return (
        pack_codes((sketch_features - centre) @ projection),
        pack_codes((photo_features - centre) @ projection),
    )
