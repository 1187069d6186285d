"""Training augmentation with torchvision's transforms v2, on uint8 tensors one image at a time.

Choices (mild, so the canonical sketch form and the photo framing stay recognisable):
- photos: random resized crop (scale 0.6-1, near-square), horizontal flip, colour jitter
  (brightness/contrast/saturation 0.2, hue 0.02);
- sketches: random affine (rotation 10 deg, translation 8 %, scale 0.85-1.1, shear 5 deg) on white
  paper, horizontal flip, and line thickness: with p 0.3 the ink is thickened by a 3x3 min filter,
  with p 0.1 thinned by a 3x3 max filter where that keeps most of the ink;
- strokes (QuickDraw, ChairV2, canvas drawings), where a data set has them: ``drop_strokes``
  removes each stroke with p 0.1 (never all) before rasterising.
Randomness comes from torch's global generator, which the trainer seeds per step.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2

from engine.sketch import Stroke
from training.arrays import photo_batch, sketch_batch


class StrokeThickness(nn.Module):
    """Randomly thicken (min filter) or thin (max filter) dark ink on a (1, H, W) uint8 sketch."""

    def __init__(self, p_thick: float = 0.3, p_thin: float = 0.1) -> None:
        super().__init__()
        self.p_thick = p_thick
        self.p_thin = p_thin

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        u = float(torch.rand(()))
        if u >= self.p_thick + self.p_thin:
            return sketch
        ink = 255 - sketch.float()[None]  # ink bright, for max pooling
        if u < self.p_thick:
            ink = nn.functional.max_pool2d(ink, 3, stride=1, padding=1)
        else:
            thin = -nn.functional.max_pool2d(-ink, 3, stride=1, padding=1)
            if thin.sum() < 0.5 * ink.sum():  # thinning would erase the drawing
                return sketch
            ink = thin
        return (255 - ink[0]).clamp_(0, 255).to(torch.uint8)


def photo_transform(size: int) -> v2.Compose:
    """Augmentation of one (3, P, P) uint8 photo, output (3, size, size) uint8."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.85, 1.18), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
        ]
    )


def sketch_transform(size: int) -> v2.Compose:
    """Augmentation of one (1, S, S) uint8 sketch (white paper), output (1, size, size) uint8."""
    return v2.Compose(
        [
            v2.RandomAffine(
                degrees=10, translate=(0.08, 0.08), scale=(0.85, 1.1), shear=5, fill=255
            ),
            v2.RandomHorizontalFlip(),
            StrokeThickness(),
            v2.Resize(size, antialias=True),
        ]
    )


def augment_photos(photos: torch.Tensor, transform: v2.Compose) -> torch.Tensor:
    """(n, P, P, 3) uint8 to augmented float (n, 3, size, size) in [0, 1]."""
    chw = photos.permute(0, 3, 1, 2)
    return torch.stack([transform(p) for p in chw]).float().div_(255.0)


def augment_sketches(sketches: torch.Tensor, transform: v2.Compose) -> torch.Tensor:
    """(n, S, S) uint8 to augmented float (n, 1, size, size) in [0, 1]."""
    return torch.stack([transform(s[None]) for s in sketches]).float().div_(255.0)


class PairBatches:
    """Sketch and photo training batches picked from prepared uint8 arrays: augmented (random
    crops, flips, stroke thickness, colour) when ``augment``, else only converted."""

    def __init__(self, size: int, augment: bool) -> None:
        self.augment = augment
        self.photo_transform = photo_transform(size)
        self.sketch_transform = sketch_transform(size)

    def __call__(
        self, sketches: np.ndarray, photos: np.ndarray, sketch_idx, photo_idx
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """float (n, 1, S, S) sketches and (m, 3, P, P) photos in [0, 1], on the CPU."""
        s, p = sketches[np.asarray(sketch_idx)], photos[np.asarray(photo_idx)]
        if not self.augment:
            return sketch_batch(s), photo_batch(p)
        s_aug = augment_sketches(torch.from_numpy(s), self.sketch_transform)
        return s_aug, augment_photos(torch.from_numpy(p), self.photo_transform)


def drop_strokes(strokes: Sequence[Stroke], p: float, rng: random.Random) -> list[Stroke]:
    """Each ink stroke dropped with probability ``p``; at least one ink stroke is kept.

    Eraser strokes are kept (dropping one would reveal ink the drawer removed).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"Stroke dropout probability must be in [0, 1), got {p}.")
    ink = [i for i, s in enumerate(strokes) if not s.eraser]
    keep = {i for i in ink if rng.random() >= p}
    if ink and not keep:
        keep = {ink[rng.randrange(len(ink))]}
    return [s for i, s in enumerate(strokes) if s.eraser or i in keep]
