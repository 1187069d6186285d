"""GDH: Generative Domain-migration Hashing (Zhang et al., ECCV 2018), what inference needs.

A sketch is migrated to the photo domain by the generator G_I and hashed there; a photo is hashed
after multiplying it by the binary attention mask of the photo-to-sketch generator G_S:

    sketch code = sgn(H(G_I(sketch)))        photo code = sgn(H(photo * mask_GS(photo)))

The discriminators D_I, D_S and the losses live in ``training.gdh_nets`` (only training needs
them). Choices where the paper is vague, and why:
- Generators (Table 1): conv 3x3 + BN + ReLU twice at ``gen_channels`` (c), two stride-2 3x3
  convs (2c, 4c), ResBlocks at 4c (c = 32 gives the paper's 128; 9 in G_I, 6 in G_S), two
  stride-2 transposed convs back (2c, c) and a 3x3 conv to the output channels. The paper's tanh
  output in [-1, 1] is a sigmoid here, because every tensor in this project is in [0, 1].
- Attention (G_S only): a 1x1 conv maps the ResBlock features to one logit a position; a softmax
  over the (H/4 x W/4) positions is thresholded into a binary mask: a position is kept when its
  weight is at least ``mask_threshold`` x the uniform weight 1/(hw). The mask multiplies the
  ResBlock features before the decoder, and, upsampled (nearest) to the photo, the photo that H
  hashes. The paper does not say how a hard threshold is trained: the mask's gradient is the
  straight-through one of the softmax (value = hard mask, gradient = that of hw x softmax). The
  1x1 conv starts at zero, so at initialisation every weight is uniform and the mask keeps the
  whole photo; it learns to drop background as training goes.
- H: ``paper`` is torchvision's ResNet-18 layout, randomly initialised, with the classifier
  replaced by a K-unit layer; ``efficientnet_lite0`` is the pretrained EfficientNet-Lite0 trunk
  (``engine.models.backbones``) with a K-unit layer on its pooled 1280-d features. Both read
  ImageNet-normalised RGB, real or generated.
- Resolution: the paper works at 256 px. ``image_size`` (64..256, multiple of 16), ``gen_channels``
  and the ResBlock counts ``gi_blocks`` / ``gs_blocks`` are config knobs, so a reduced-resolution
  configuration trains on a CPU (see ``training.methods.gdh`` for the one measured here).
- Generator convs start from He (Kaiming normal) initialisation, which keeps the signal's scale
  through the layers: with PyTorch's default init an untrained generator in eval mode shrinks
  every input to one flat colour, and the app's "imagine" view would show nothing.
- ``skip`` (off by default: the paper has none) adds the input to the generator's output before
  the sigmoid, 4 x (2x - 1) (grey repeated to RGB, RGB averaged to grey), and starts the last
  conv at zero, so each generator starts as the identity and learns a residual: G_I(sketch) is
  first the sketch itself, which the pretrained H already tells apart by class, and the cycle
  terms start near zero. Why: at a CPU budget (64 to 128 px, a few hundred steps) H had to learn
  to hash the output of a random generator, and the codes stayed at chance (see
  ``training.methods.gdh``); the residual generator is the usual remedy when a generator must
  learn on little data, and it changes nothing of the objective.
- ``attention=False`` is the Table 5 ablation without the attention layer (mask all ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from engine.errors import ConfigError
from engine.models.backbones import (
    EFFICIENTNET_LITE0_FEATURES,
    ImageNetNormalize,
    efficientnet_lite0,
)
from engine.models.base import ModelConfig, SketchHashModel, sketch_tensor
from engine.models.registry import register


@dataclass(frozen=True)
class GDHConfig(ModelConfig):
    image_size: int = 256
    gen_channels: int = 32  # ResBlocks run at 4x this: 128 as the paper
    gi_blocks: int = 9
    gs_blocks: int = 6
    attention: bool = True
    mask_threshold: float = 0.5  # keep positions with softmax weight >= this x uniform
    skip: bool = False  # generators start as the identity (see docstring); False: the paper
    pretrained: bool = True  # efficientnet_lite0 backbone only

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 64 <= self.image_size <= 256 or self.image_size % 16:
            raise ConfigError("gdh image_size must be a multiple of 16 between 64 and 256.")
        if not 4 <= self.gen_channels <= 64:
            raise ConfigError("gdh gen_channels must be between 4 and 64.")
        if not (1 <= self.gi_blocks <= 12 and 1 <= self.gs_blocks <= 12):
            raise ConfigError("gdh gi_blocks and gs_blocks must be between 1 and 12.")
        if not 0 < self.mask_threshold < 1:
            raise ConfigError("gdh mask_threshold must be in (0, 1).")


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def _deconv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(channels, channels),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def attention_mask(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, 1, h, w) logits to a binary (B, 1, h, w) mask with a straight-through gradient.

    weight = hw x spatial softmax (mean 1); mask = [weight >= threshold]; the backward pass is
    that of ``weight``.
    """
    flat = logits.flatten(1)
    soft = flat.softmax(dim=1) * flat.shape[1]
    hard = (soft >= threshold).to(soft.dtype)
    return (hard + (soft - soft.detach())).view_as(logits)  # exactly the hard mask


class Generator(nn.Module):
    """Encoder (2 convs, 2 stride-2 convs), ResBlocks, optional attention mask, decoder."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int,
        blocks: int,
        attention: bool = False,
        threshold: float = 0.5,
        skip: bool = False,
    ) -> None:
        super().__init__()
        c = channels
        self.skip = skip
        self.encoder = nn.Sequential(
            *_conv_bn(in_channels, c),
            *_conv_bn(c, c),
            *_conv_bn(c, 2 * c, stride=2),
            *_conv_bn(2 * c, 4 * c, stride=2),
            *[ResBlock(4 * c) for _ in range(blocks)],
        )
        self.attention = nn.Conv2d(4 * c, 1, 1) if attention else None
        if self.attention is not None:
            nn.init.zeros_(self.attention.weight)
            nn.init.zeros_(self.attention.bias)
        self.threshold = threshold
        self.decoder = nn.Sequential(
            *_deconv_bn(4 * c, 2 * c),
            *_deconv_bn(2 * c, c),
            nn.Conv2d(c, out_channels, 3, 1, 1),
        )
        for module in (*self.encoder.modules(), *self.decoder.modules()):
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):  # He init (see docstring)
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if skip:  # the decoder starts at zero: the generator starts as the identity
            nn.init.zeros_(self.decoder[-1].weight)
            nn.init.zeros_(self.decoder[-1].bias)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ResBlock features (B, 4c, h/4, w/4) and the binary mask (B, 1, h/4, w/4) or None."""
        f = self.encoder(x)
        if self.attention is None:
            return f, None
        return f, attention_mask(self.attention(f), self.threshold)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Generated image (B, out, h, w) in [0, 1] and the low-resolution mask (or None)."""
        f, mask = self.features(x)
        if mask is not None:
            f = f * mask
        out = self.decoder(f)
        if self.skip:
            out = out + SKIP_GAIN * (2.0 * _match_channels(x, out.shape[1]) - 1.0)
        return torch.sigmoid(out), mask


SKIP_GAIN = 4.0  # sigmoid(+-4) = 0.982 / 0.018: white paper and black strokes pass nearly unchanged


def _match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey to RGB by repetition, RGB to grey by the channel mean, else unchanged."""
    if x.shape[1] == channels:
        return x
    if channels == 1:
        return x.mean(dim=1, keepdim=True)
    return x.expand(-1, channels, -1, -1)


def _hash_trunk(config: GDHConfig) -> tuple[nn.Module, int]:
    if config.backbone == "paper":
        net = torchvision.models.resnet18(weights=None)
        features = net.fc.in_features
        net.fc = nn.Identity()
        return net, features
    return efficientnet_lite0(pretrained=config.pretrained, num_classes=0), (
        EFFICIENTNET_LITE0_FEATURES
    )


@register
class GDHModel(SketchHashModel):
    method = "gdh"
    config_class = GDHConfig
    needs_edges = False
    can_imagine: ClassVar[bool] = True

    def __init__(self, config: GDHConfig) -> None:
        super().__init__(config)
        c = config.gen_channels
        self.g_i = Generator(1, 3, c, config.gi_blocks, skip=config.skip)
        self.g_s = Generator(
            3, 1, c, config.gs_blocks, config.attention, config.mask_threshold, config.skip
        )
        self.normalize = ImageNetNormalize()
        self.trunk, features = _hash_trunk(config)
        self.hash_layer = nn.Linear(features, config.bits)

    # ------------------------------------------------------------------ parts
    def hash(self, images: torch.Tensor) -> torch.Tensor:
        """H: (B, 3, P, P) RGB in [0, 1] to (B, K) real-valued outputs."""
        return self.hash_layer(self.trunk(self.normalize(images)))

    def photo_mask(self, photos: torch.Tensor) -> torch.Tensor:
        """G_S's binary mask at photo resolution (B, 1, P, P); all ones without attention."""
        _, mask = self.g_s.features(photos)
        if mask is None:
            return torch.ones_like(photos[:, :1])
        return F.interpolate(mask, size=photos.shape[-2:], mode="nearest")

    # ------------------------------------------------------------------ the base interface
    def sketch_forward(self, sketches: torch.Tensor) -> torch.Tensor:
        fake, _ = self.g_i(sketches)
        return self.hash(fake)

    def photo_forward(
        self, photos: torch.Tensor, edges: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.hash(photos * self.photo_mask(photos))

    # ------------------------------------------------------------------ imagine
    @torch.no_grad()
    def imagine(self, sketches: np.ndarray) -> np.ndarray:
        """uint8 (n, S, S) normalised sketches to the photos G_I makes of them, uint8 (n, P, P, 3).

        Like ``embed_*``, an eval model's mode is left alone (threads may share it); a model in
        training mode is switched to eval for the call and back.
        """
        batch = sketch_tensor(sketches, self.sketch_size, self.device)
        was_training = self.training
        if was_training:
            self.eval()
        try:
            fake, _ = self.g_i(batch)
        finally:
            if was_training:
                self.train()
        out = fake.float().clamp(0, 1).mul(255).round().to(torch.uint8)
        return out.permute(0, 2, 3, 1).cpu().numpy()
