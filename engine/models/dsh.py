"""Deep Sketch Hashing (DSH): the semi-heterogeneous network with sketch-tokens.

Paper: L. Liu, F. Shen, Y. Shen, X. Liu, L. Shao, "Deep Sketch Hashing: Fast Free-hand
Sketch-Based Image Retrieval", CVPR 2017 (arXiv 1703.05605). This module is what inference
needs; the objective and the discrete code learning are in ``training.methods.dsh`` and
``training.discrete``.

Structure (the paper's, with our choices marked):
- C1-Net encodes photos. C2-Net encodes free-hand sketches AND the photo's sketch-token map, one
  set of weights for both (the "semi-heterogeneous" design: sketches and sketch-tokens are both
  line drawings).
- Sketch-tokens: the paper computes structured-forest sketch tokens of each photo; those
  detectors are not available here, so the photo's edge map from ``engine.edges`` (Canny, thin
  dark lines on white, the sketch convention) is the token map (``needs_edges``). At search time
  the engine computes it from the photo, or the caller passes a data set's released map.
- Photo side: the photo stream (C1 features) and the token stream (C2 features) each go through
  their own two fully connected layers (FC ``fc1`` then FC ``fc2``, ReLU and dropout 0.5 after
  each: the deploy files' two parallel FC-4096 then two parallel FC-1024), the two ``fc2``
  vectors are concatenated (late fusion) and one linear layer gives the K outputs. Sketch side:
  C2 features, its own FC ``fc1`` -> FC ``fc2`` (same form, not shared with the token stream:
  the paper shares only the convolutional C2-Net) and its own linear K-output layer.
- The K real outputs' signs are the code. Training uses tanh of the outputs (the paper regresses
  the linear outputs to the codes; tanh bounds them, which keeps the pairwise likelihood's
  inner products in [-K, K]; the sign, hence the code, is the same).
- ``sketch_tokens=False``: the ablation without the token stream; the photo side is C1 -> FCs ->
  K, no edge maps are computed (``edge_maps`` returns None).
- ``dropout`` (default 0.5, the paper's) and ``fc_batchnorm`` (BatchNorm after each FC layer;
  default off, not in the paper) are options for short CPU runs: the shipped recipe
  (``training.methods.dsh``, DEVELOPERS.md) uses the paper's dropout and ``fc_batchnorm=True``;
  the earlier recipe, which trained the trunks, needed ``dropout=0`` as well, because without
  them the outputs fell to an input-independent optimum of the pairwise loss within the budget.

Backbones:
- ``paper`` (random init: the authors' weights cannot be had): C1 CaffeNet-like conv1-5
  (96 11x11/4, max-pool 3/2, 256 5x5 (2 groups), max-pool, 384 3x3, 384 3x3 (2 groups),
  256 3x3 (2 groups), max-pool), with BatchNorm in place of CaffeNet's LRN, as trains from
  scratch far better; C2 a conv stack starting with the deploy files' 14x14 stride-3 convolution,
  BatchNorm after every convolution: 64 14x14/3, max-pool 3/2, 128 5x5, max-pool 3/2, 256 3x3,
  256 3x3, 256 3x3, max-pool 3/2. The paper feeds photos at 227 px and sketches at 200 px; here
  both come at ``image_size`` (default 224 unless set; one size keeps the engine's
  preprocessing single), and an adaptive average pool to 6x6 (C1) and 7x7 (C2) before the first
  FC makes the FC input independent of the size. FC widths 4096 / 1024 (the paper's).
- ``efficientnet_lite0`` (pretrained, ``engine.models.backbones``): one trunk for C1 and one
  shared trunk for C2 (line drawings repeated to 3 channels and ImageNet-normalised, as the
  baseline), each globally pooled to 1280-d. FC widths default to 512 / 256 (``fc1=0`` and
  ``fc2=0`` mean "the backbone's default"): the pooled 1280-d trunk output is already compact,
  and 4096-wide FCs on it would add ~110 MB of weights; two trunks (~27 MB float32) plus these
  FCs ship under 25 MB as float16 (``save_checkpoint(weights_dtype="float16")``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ConfigError
from engine.models.backbones import (
    EFFICIENTNET_LITE0_FEATURES,
    ImageNetNormalize,
    efficientnet_lite0,
)
from engine.models.base import ModelConfig, SketchHashModel
from engine.models.registry import register

DEFAULT_FC = {"paper": (4096, 1024), "efficientnet_lite0": (512, 256)}


@dataclass(frozen=True)
class DSHConfig(ModelConfig):
    pretrained: bool = True  # efficientnet_lite0 only: start both trunks from ImageNet weights
    sketch_tokens: bool = True  # False: the ablation without the photo's sketch-token stream
    fc1: int = 0  # width of the first FC layers; 0: the backbone's default (see docstring)
    fc2: int = 0  # width of the second FC layers; 0: the backbone's default
    dropout: float = 0.5  # after each FC layer (the paper's 0.5)
    fc_batchnorm: bool = False  # BatchNorm after each FC layer (not in the paper; see docstring)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 64 <= self.image_size <= 512:
            raise ConfigError("dsh image_size must be between 64 and 512 pixels.")
        if self.backbone == "paper" and self.image_size < 96:
            raise ConfigError("dsh with the paper backbone needs image_size >= 96 (CaffeNet).")
        for name in ("fc1", "fc2"):
            value = getattr(self, name)
            if value != 0 and not 8 <= value <= 8192:
                raise ConfigError(f"dsh {name} must be 0 (default) or between 8 and 8192.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dsh dropout must be in [0, 1).")

    @property
    def fc_widths(self) -> tuple[int, int]:
        d1, d2 = DEFAULT_FC[self.backbone]
        return self.fc1 or d1, self.fc2 or d2


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    pad = 0 if k > 7 else k // 2
    return [
        nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class CaffeNetC1(nn.Module):
    """The paper's photo stream (conv1-5 of CaffeNet, BatchNorm for LRN), flattened 256x6x6."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *_conv(3, 96, 11, 4),
            nn.MaxPool2d(3, 2),
            *_conv(96, 256, 5, groups=2),
            nn.MaxPool2d(3, 2),
            *_conv(256, 384, 3),
            *_conv(384, 384, 3, groups=2),
            *_conv(384, 256, 3, groups=2),
            nn.MaxPool2d(3, 2),
            nn.AdaptiveAvgPool2d(6),
        )
        self.features = 256 * 6 * 6

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images - 0.5).flatten(1)


class SketchC2(nn.Module):
    """The paper's line-drawing stream (14x14 stride-3 first conv, BatchNorm), flat 256x7x7."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *_conv(1, 64, 14, 3),
            nn.MaxPool2d(3, 2),
            *_conv(64, 128, 5),
            nn.MaxPool2d(3, 2),
            *_conv(128, 256, 3),
            *_conv(256, 256, 3),
            *_conv(256, 256, 3),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(7),
        )
        self.features = 256 * 7 * 7

    def forward(self, drawings: torch.Tensor) -> torch.Tensor:
        return self.layers(drawings - 0.5).flatten(1)


class LiteTrunk(nn.Module):
    """Pretrained EfficientNet-Lite0 to a pooled 1280-d vector; ``net`` is timm's model, so
    ``training.procedure.freeze_backbone_blocks(trunk.net, n)`` applies."""

    def __init__(self, pretrained: bool) -> None:
        super().__init__()
        self.normalize = ImageNetNormalize()
        self.net = efficientnet_lite0(pretrained=pretrained, num_classes=0)
        self.features = EFFICIENTNET_LITE0_FEATURES

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(images))


def _fc_stream(cin: int, fc1: int, fc2: int, dropout: float, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in ((cin, fc1), (fc1, fc2)):
        layers.append(nn.Linear(a, b))
        if norm:
            layers.append(nn.BatchNorm1d(b))
        layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


@register
class DSHModel(SketchHashModel):
    method = "dsh"
    config_class = DSHConfig
    needs_edges = True

    def __init__(self, config: DSHConfig) -> None:
        super().__init__(config)
        if config.backbone == "efficientnet_lite0":
            self.c1: nn.Module = LiteTrunk(config.pretrained)
            self.c2: nn.Module = LiteTrunk(config.pretrained)
        else:
            self.c1, self.c2 = CaffeNetC1(), SketchC2()
        fc1, fc2 = config.fc_widths
        self.photo_fc = _fc_stream(self.c1.features, fc1, fc2, config.dropout, config.fc_batchnorm)
        self.token_fc = (
            _fc_stream(self.c2.features, fc1, fc2, config.dropout, config.fc_batchnorm)
            if config.sketch_tokens
            else None
        )
        fused = 2 * fc2 if config.sketch_tokens else fc2
        self.photo_hash = nn.Linear(fused, config.bits)
        self.sketch_fc = _fc_stream(self.c2.features, fc1, fc2, config.dropout, config.fc_batchnorm)
        self.sketch_hash = nn.Linear(fc2, config.bits)

    def edge_maps(self, photos: torch.Tensor) -> torch.Tensor | None:
        return super().edge_maps(photos) if self.config.sketch_tokens else None

    # ------------------------------------------------------------------ network
    def _drawings(self, drawings: torch.Tensor) -> torch.Tensor:
        """C2-Net on sketches or token maps, resized to the model's size if needed."""
        size = self.sketch_size
        if drawings.shape[-2:] != (size, size):
            drawings = F.interpolate(
                drawings, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        return self.c2(drawings)

    def _photo_head(self, photo_features: torch.Tensor, token_features: torch.Tensor | None):
        fused = self.photo_fc(photo_features)
        if self.token_fc is not None:
            if token_features is None:
                raise ConfigError("DSH's photo side needs the photos' sketch-token (edge) maps.")
            fused = torch.cat([fused, self.token_fc(token_features)], dim=1)
        return self.photo_hash(fused)

    def _sketch_head(self, sketch_features: torch.Tensor) -> torch.Tensor:
        return self.sketch_hash(self.sketch_fc(sketch_features))

    def sketch_forward(self, sketches: torch.Tensor) -> torch.Tensor:
        return self._sketch_head(self._drawings(sketches))

    def photo_forward(
        self, photos: torch.Tensor, edges: torch.Tensor | None = None
    ) -> torch.Tensor:
        tokens = None
        if self.token_fc is not None:
            if edges is None:
                raise ConfigError("DSH's photo side needs the photos' sketch-token (edge) maps.")
            tokens = self._drawings(edges)
        return self._photo_head(self.c1(photos), tokens)

    def pair_forward(
        self, sketches: torch.Tensor, photos: torch.Tensor, edges: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: (sketch outputs, photo outputs), sketches and token maps sharing one
        batch through C2-Net (one set of BatchNorm statistics for both line-drawing inputs)."""
        n = len(sketches)
        if self.token_fc is None:
            return self.sketch_forward(sketches), self._photo_head(self.c1(photos), None)
        if edges is None:
            raise ConfigError("DSH's photo side needs the photos' sketch-token (edge) maps.")
        drawn = self._drawings(torch.cat([sketches, edges]))
        return self._sketch_head(drawn[:n]), self._photo_head(self.c1(photos), drawn[n:])
