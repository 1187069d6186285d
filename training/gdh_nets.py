"""GDH's training-only parts: the discriminators D_I, D_S and the terms of its objective (eq. 7).

Paper: Zhang et al., "Generative Domain-Migration Hashing for Sketch-to-Image Retrieval",
ECCV 2018. Choices where the paper is vague, and why:
- Discriminators (Table 1, PatchGAN-like): 4x4 convs, stride 2, 2, 2, 1, 1 at c, 2c, 4c, 8c and 1
  channels, LeakyReLU 0.2, BatchNorm after all but the first and the last (c = 64 as the paper;
  ``disc_channels`` smaller for CPU). D_I reads RGB photos, D_S 1-channel sketches; the output is
  a map of real/fake scores, one per overlapping patch.
- Adversarial loss: least squares (LSGAN, as CycleGAN, whose generators GDH builds on), because
  it trains more stably than the log loss: D minimises ((D(real) - 1)^2 + D(fake)^2) / 2, the
  generator minimises (D(fake) - 1)^2, each a mean over the patch map.
- Cycle consistency: mean absolute error (L1, as CycleGAN), both ways.
- Every hashing term is a mean over its elements (the paper writes Frobenius norms over the
  whole training set), so the terms have the same scale whatever the batch size and K:
  ``semantic_regression`` mean (B - u)^2 (the network side of L_sem: the outputs u = tanh(H(.))
  regress the codes B of the discrete step); ``quantisation`` mean (|u| - 1)^2 (L_q: the relaxed
  codes go to +-1); ``unification`` mean (u_photo - u_generated)^2 over the paired rows (L_c:
  a photo and the photo generated from its paired sketch get one code); the triplet term (eq. 6)
  is ``training.losses.triplet`` on (G_I(sketch), its photo, another photo) with margin K / 2 in
  squared Euclidean distance of u.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Discriminator(nn.Module):
    """PatchGAN-like discriminator: (B, in, H, W) in [0, 1] to a (B, 1, h, w) score map."""

    def __init__(self, in_channels: int, channels: int = 64) -> None:
        super().__init__()
        c = channels
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, c, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for cin, cout, stride in ((c, 2 * c, 2), (2 * c, 4 * c, 2), (4 * c, 8 * c, 1)):
            layers += [
                nn.Conv2d(cin, cout, 4, stride, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers.append(nn.Conv2d(8 * c, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)


def lsgan_discriminator(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """((D(real) - 1)^2 + D(fake)^2) / 2, each a mean over its score map."""
    return 0.5 * ((real - 1.0).pow(2).mean() + fake.pow(2).mean())


def lsgan_generator(fake: torch.Tensor) -> torch.Tensor:
    """mean (D(fake) - 1)^2: the generator wants its images scored real."""
    return (fake - 1.0).pow(2).mean()


def cycle(original: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
    """mean |x - F(G(x))|."""
    return (original - reconstructed).abs().mean()


def semantic_regression(u: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """mean (B - u)^2: the network side of the semantic factorisation."""
    return (codes.to(u.dtype) - u).pow(2).mean()


def quantisation(u: torch.Tensor) -> torch.Tensor:
    """mean (|u| - 1)^2 = mean (sgn(u) - u)^2."""
    return (u.abs() - 1.0).pow(2).mean()


def unification(u_photo: torch.Tensor, u_generated: torch.Tensor) -> torch.Tensor:
    """mean (u_photo - u_generated)^2 over paired rows."""
    return (u_photo - u_generated).pow(2).mean()


def upsample_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A low-resolution (B, 1, h, w) mask at ``like``'s resolution; ones where there is none."""
    if mask is None:
        return torch.ones_like(like[:, :1])
    return F.interpolate(mask, size=like.shape[-2:], mode="nearest")
