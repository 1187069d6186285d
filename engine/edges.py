"""Edge maps of photos, for the methods whose photo side takes one (DSH, Semi3-Net, DSSA).

An edge map follows the sketch convention: float in [0, 1], white paper = 1, edges dark = 0.

Choices (tuned on 20 QMUL-Shoe-V1 photos against the edge maps released with the data set, an
F-score of edge pixels within 3 px of the other map's edges; see tests/engine/test_edges.py):
- Kornia's Canny (``kornia.filters.canny``) on the grey image, batched on the input's device.
- Gaussian sigma 1.5 px at 256 px, scaled with the image's short side, so a 224 px model input gets
  the same edges as its 256 px original, relatively.
- One threshold (0.4) on the non-maximum-suppressed gradient, no hysteresis: on the shoes,
  hysteresis (0.15/0.4 or 0.3/0.6) did not score better (0.85 vs 0.86) and kornia's edge tracking
  grows one pixel per round, about a second per photo on a CPU. Mean F-score 0.86 against the
  released maps vs 0.17 to 0.22 for mismatched pairs of photos.
- One-pixel binary edges, not thickened: the released maps are also thin (1 to 2 px).
"""

from __future__ import annotations

import logging
import math

import kornia
import numpy as np
import torch
from PIL import Image

from engine.errors import ConfigError, ImageLoadError

log = logging.getLogger(__name__)

EDGE_SIGMA_AT_256 = 1.5
"""Gaussian smoothing before the gradient, in pixels of a 256 px image."""
EDGE_THRESHOLD = 0.4
"""Gradient magnitude (kornia's units, RGB in [0, 1]) above which a thinned pixel is an edge."""


def edge_maps(photos: torch.Tensor, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] on any device to (B, 1, H, W) edge maps: 1 paper, 0 edge.

    ``threshold``: the gradient magnitude above which a thinned pixel is an edge (a model's
    config may set its own; lower keeps fainter edges)."""
    if photos.ndim != 4 or photos.shape[1] != 3:
        raise ConfigError(f"edge_maps needs a (B, 3, H, W) RGB batch, got {tuple(photos.shape)}")
    dtype = photos.dtype if photos.dtype.is_floating_point else torch.float32
    sigma = EDGE_SIGMA_AT_256 * min(photos.shape[-2:]) / 256.0
    kernel = 2 * math.ceil(3.0 * sigma) + 1
    with torch.no_grad():
        _, edges = kornia.filters.canny(
            photos.to(torch.float32),
            low_threshold=threshold,
            high_threshold=threshold,
            kernel_size=kernel,
            sigma=(sigma, sigma),
            hysteresis=False,
        )
    return (1.0 - edges.clamp_(0.0, 1.0)).to(dtype)


def edge_map_image(photo: Image.Image) -> np.ndarray:
    """Edge map of one PIL photo as uint8 (H, W), 255 paper, 0 edges (at the photo's size).

    Meant for model-sized photos (see ``prepare_photo``): the blur grows with the image.
    """
    if photo.width < 1 or photo.height < 1:
        raise ImageLoadError("The photo has no pixels.")
    rgb = np.asarray(photo.convert("RGB"), dtype=np.float32) / 255.0
    batch = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    out = edge_maps(batch)[0, 0].numpy()
    return np.round(out * 255.0).astype(np.uint8)
