"""HOG descriptors of line drawings: sketches and photos' edge maps.

A sketch and a photo's edge map are both line drawings, so a histogram of gradient orientations
compares them without learning (the HOG rows of the SBIR papers' tables). Used by the classical
baseline (``training.classical``) and by DSSA's re-ranking, which adds the HOG distance of the
drawings the network sees to its learnt one (``engine.models.dssa``, ``hog_weight``).

- drawings at ``HOG_SIZE`` = 128 px, white paper and dark lines, as float in [0, 1];
- skimage ``hog``: 9 orientations, 16 x 16-pixel cells, 2 x 2-cell blocks, L2-Hys: coarse cells
  tolerate the misalignment between a free-hand sketch and the photo (``hog_dim()`` = 1764).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.feature import hog

HOG_SIZE = 128
HOG_ARGS = {
    "orientations": 9,
    "pixels_per_cell": (16, 16),
    "cells_per_block": (2, 2),
    "block_norm": "L2-Hys",
    "feature_vector": True,
}


def hog_dim(block: int = 2) -> int:
    """Length of a HOG of HOG_ARGS with ``block`` x ``block``-cell blocks at HOG_SIZE."""
    cells = HOG_SIZE // HOG_ARGS["pixels_per_cell"][0]
    side = cells - block + 1
    if not 1 <= block <= cells:
        raise ValueError(f"HOG blocks must be 1 to {cells} cells wide.")
    return side * side * block * block * HOG_ARGS["orientations"]


def resize(batch: torch.Tensor, size: int) -> torch.Tensor:
    """(n, C, H, W) float images at size x size (antialiased bilinear); unchanged if already."""
    if batch.shape[-1] == size and batch.shape[-2] == size:
        return batch
    return F.interpolate(
        batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )


def hog_features(drawings: np.ndarray, block: int = 2) -> np.ndarray:
    """float32 (n, D) HOG of (n, H, W) line drawings in [0, 1] (white paper, dark lines), with
    ``block`` x ``block``-cell blocks (2: HOG_ARGS, the classical baseline's)."""
    # HOG of the ink (1 - image): the same gradients, with lines as the bright structure
    if len(drawings) == 0:
        return np.empty((0, hog_dim(block)), np.float32)
    args = {**HOG_ARGS, "cells_per_block": (block, block)}
    return np.stack([hog(1.0 - d, **args) for d in drawings]).astype(np.float32)


def drawing_hog(batch: torch.Tensor, block: int = 2) -> np.ndarray:
    """float32 (n, hog_dim(block)) unit-length HOG of a (n, 1, S, S) batch of drawings in
    [0, 1] (the network's input: normalised sketches, or edge maps drawn like them), taken at
    HOG_SIZE."""
    small = resize(batch.detach().float().cpu(), HOG_SIZE)[:, 0].clamp(0, 1).numpy()
    h = hog_features(small, block)
    return h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
