"""Baseline: one pretrained EfficientNet-Lite0 shared by sketches and photos, and a hash layer.

Not a paper method: the simplest learned model that makes the whole path real before the four
paper methods land, and the first shipped default. Choices:
- one trunk for both domains (sketches are fed as 3 equal channels), so a sketch and a photo of the
  same thing start from the same ImageNet features;
- global average pooling, then a two-layer hash head (1280 -> 512 -> K) with the sign of its
  output as the code; training (training.methods.baseline) relaxes the sign with tanh;
- ``image_size`` 224 (the backbone's native size) for both inputs; a smaller size is allowed for
  fast CPU training and trades accuracy for speed.
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
class BaselineConfig(ModelConfig):
    hidden: int = 512
    pretrained: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone != "efficientnet_lite0":
            raise ConfigError("The baseline method only has the efficientnet_lite0 backbone.")
        if not 96 <= self.image_size <= 512 or self.image_size % 32:
            raise ConfigError("baseline image_size must be a multiple of 32 between 96 and 512.")
        if self.hidden < 16:
            raise ConfigError("baseline hidden must be at least 16.")


@register
class BaselineModel(SketchHashModel):
    method = "baseline"
    config_class = BaselineConfig
    needs_edges = False

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        self.normalize = ImageNetNormalize()
        self.trunk = efficientnet_lite0(pretrained=config.pretrained, num_classes=0)
        self.hash_head = nn.Sequential(
            nn.Linear(EFFICIENTNET_LITE0_FEATURES, config.hidden),
            nn.BatchNorm1d(config.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.hidden, config.bits),
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled 1280-d trunk features of [0, 1] images (1 or 3 channels)."""
        return self.trunk(self.normalize(images))

    def sketch_forward(self, sketches: torch.Tensor) -> torch.Tensor:
        return self.hash_head(self.features(sketches))

    def photo_forward(
        self, photos: torch.Tensor, edges: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.hash_head(self.features(photos))
