"""Semi3-Net: the semi-heterogeneous three-way joint embedding network with co-attention.

Paper: J. Lei, Y. Song, B. Peng, Z. Ma, L. Shao, Y.-Z. Song, "Semi-heterogeneous Three-way Joint
Embedding Network for Sketch-Based Image Retrieval", IEEE TCSVT 2019 (arXiv 1911.04470).
No public code exists; the paper's choices are kept where it states them, ours are marked.

Three branches, for the sketch, the natural photo and the photo's edge map (``needs_edges``:
``engine.edges`` computes it at search time, or the caller passes the data set's released one):
1. bottom layers (semi-heterogeneous feature mapping): the sketch and edge-map branches share one
   lower network, the photo branch has its own. ``efficientnet_lite0``: two copies of the
   pretrained trunk's stem and first ``shared_from`` stages (default 5: up to the 112-channel
   stage, stride 16), one for photos and one for line drawings (grey, repeated to 3 channels,
   ImageNet-normalised like the baseline). Why 5: the stages above hold most of the weights
   (stage 6 and 7 and the 1280-channel head), so duplicating only the lower stages keeps the
   checkpoint about 21 MB (the shipped-model limit is 25 MB), while the part where photos and
   line drawings differ most (colour, texture, low-level statistics) is domain-specific, as in
   the paper's separate VGG conv1-conv5. ``paper``: the paper uses VGG-19 from ImageNet, which
   cannot be had here and is 548 MB; we use a small randomly initialised conv stack (conv 5x5/2
   32, pool, conv 3x3 64, pool, conv 3x3 128 below; conv 3x3 256 twice above, all with BN and
   ReLU) with the same split: bottom separate, top shared.
2. co-attention (``coattention``) between the photo and edge-map branches, at the top of the
   bottom layers: squeeze-and-excitation whose excitation reads BOTH domains, i.e. the globally
   average-pooled photo and edge-map maps concatenated (2C) -> FC C/r, ReLU -> FC C, sigmoid,
   and the one resulting channel weight vector rescales both maps. The paper fuses the two SE
   descriptors; concatenation is our reading (it lets each domain's evidence weigh in). The
   sketch branch has no partner at query time and is not recalibrated. Reduction r = 16 (SE-Net).
   The SE gate starts near 0.5, so at first photo and edge-map maps reach the shared top layers
   at half the scale of the sketches' (their BatchNorms mix all three); ``coattention_gate=
   "unit"`` (2 x sigmoid, starting near 1) avoids that: on the short 26-class Sketchy run of
   ``training.methods.semi3`` (one seed) it scored ITQ mAP 0.419 against 0.372 with the SE gate
   and 0.421 without co-attention. "sigmoid" stays the default because the shipped checkpoint
   was trained with it and checkpoints written before this option do not record it.
3. top layers shared by all three branches: ``efficientnet_lite0``: the trunk's remaining stages
   and its 1280-channel head, global average pooling; both backbones then a joint embedding
   FC D=512 (BN, ReLU) -> FC ``embed_dim`` (the paper's fc7, 4096-d on VGG; 256 by default here).
   Training (``training.methods.semi3``) puts its losses and a classifier on this embedding.
4. binarisation (not in the paper, which ranks real-valued features), ``binarize``:
   ``learned``: a linear projection embed_dim -> K followed by BatchNorm (centred so every bit
   splits the data; a fixed affine map at search time), trained on tanh of its output; the sign
   of its output is the K-bit code. ``itq``: ITQ (Gong and Lazebnik, CVPR 2011), the sign of
   (z - mean) @ projection with PCA + rotation fitted on training embeddings at the end of
   training (``training.methods.semi3``), kept as buffers in the checkpoint; the learned
   projection is still trained beside it (its loss shapes the embedding). ITQ ranked better on
   Sketchy: binary test mAP 0.209 vs 0.165 for the learned sign on the same 315-step CPU model
   (real-valued 0.240 vs 0.217), and better in 3 of 4 short 26-class runs; it is the default.
5. ``edge_branch=False``: the two-branch ablation: photos and sketches only, no edge maps are
   computed (``edge_maps`` returns None), co-attention must be off.
Edge maps are fed raw (the paper's input: thin Canny lines on white), not redrawn like sketches.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine.errors import ConfigError
from engine.models.backbones import (
    EFFICIENTNET_LITE0_FEATURES,
    ImageNetNormalize,
    efficientnet_lite0,
)
from engine.models.base import ModelConfig, SketchHashModel, photo_tensor, sketch_tensor
from engine.models.registry import register

HIDDEN = 512
LITE0_STAGES = 7
PAPER_LOW, PAPER_HIGH = 128, 256
BINARIZE = ("learned", "itq")
GATES = ("sigmoid", "unit")


@dataclass(frozen=True)
class Semi3Config(ModelConfig):
    pretrained: bool = True  # efficientnet_lite0 only: start from ImageNet weights
    shared_from: int = 5  # efficientnet_lite0: stages below this are per-domain (see 1.)
    embed_dim: int = 256  # joint embedding width
    coattention: bool = True  # co-attention between photo and edge-map branches
    edge_branch: bool = True  # False: the two-branch ablation (no edge maps)
    reduction: int = 16  # co-attention bottleneck ratio
    binarize: str = "itq"  # "itq" or the "learned" sign projection (see 4.)
    coattention_gate: str = "sigmoid"  # "sigmoid" (SE, in (0, 1)) or "unit" (2 x sigmoid; see 2.)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 64 <= self.image_size <= 512 or self.image_size % 32:
            raise ConfigError("semi3 image_size must be a multiple of 32 between 64 and 512.")
        if not 1 <= self.shared_from <= LITE0_STAGES - 1:
            raise ConfigError(f"semi3 shared_from must be between 1 and {LITE0_STAGES - 1}.")
        if self.embed_dim < 16 or self.reduction < 1:
            raise ConfigError("semi3 embed_dim must be at least 16 and reduction at least 1.")
        if self.coattention_gate not in GATES:
            raise ConfigError(f"semi3 coattention_gate must be one of {GATES}.")
        if self.binarize not in BINARIZE:
            raise ConfigError(f"semi3 binarize must be one of {BINARIZE}.")
        if self.coattention and not self.edge_branch:
            raise ConfigError(
                "semi3 co-attention needs the edge-map branch; set coattention=False for the "
                "two-branch ablation (edge_branch=False)."
            )


class CoAttention(nn.Module):
    """Channel weights from both domains' pooled maps, applied to both maps (see 2.)."""

    def __init__(self, channels: int, reduction: int, gate: str = "sigmoid") -> None:
        super().__init__()
        self.scale = 2.0 if gate == "unit" else 1.0
        self.excite = nn.Sequential(
            nn.Linear(2 * channels, max(4, channels // reduction)),
            nn.ReLU(inplace=True),
            nn.Linear(max(4, channels // reduction), channels),
            nn.Sigmoid(),
        )

    def weights(self, photo: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        """(B, C) channel weights in (0, 1), or (0, 2) for the "unit" gate, shared by a photo map
        and its edge map."""
        pooled = torch.cat([photo.mean(dim=(2, 3)), edge.mean(dim=(2, 3))], dim=1)
        return self.scale * self.excite(pooled)

    def forward(self, photo: torch.Tensor, edge: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weights(photo, edge)[:, :, None, None]
        return photo * w, edge * w


class LiteLower(nn.Module):
    """Stem and the first ``stages`` stages of EfficientNet-Lite0 (attribute names as timm's, so
    ``training.procedure.freeze_backbone_blocks`` applies)."""

    def __init__(self, trunk: nn.Module, stages: int) -> None:
        super().__init__()
        self.normalize = ImageNetNormalize()
        self.conv_stem, self.bn1 = trunk.conv_stem, trunk.bn1
        self.blocks = nn.Sequential(*list(trunk.blocks)[:stages])
        self.channels = int(trunk.blocks[stages - 1][-1].bn3.num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.bn1(self.conv_stem(self.normalize(images))))


class LiteUpper(nn.Module):
    """The remaining stages, the 1280-channel head and global average pooling."""

    def __init__(self, trunk: nn.Module, stages: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*list(trunk.blocks)[stages:])
        self.conv_head, self.bn2 = trunk.conv_head, trunk.bn2
        self.features = EFFICIENTNET_LITE0_FEATURES

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_head(self.blocks(f))).mean(dim=(2, 3))


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class PaperLower(nn.Module):
    """The small randomly initialised bottom stack (see 1.): (B, cin, S, S) to 128 x S/8."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.channels = PAPER_LOW
        self.layers = nn.Sequential(
            *_conv(cin, 32, 5, 2),
            nn.MaxPool2d(2),
            *_conv(32, 64, 3),
            nn.MaxPool2d(2),
            *_conv(64, PAPER_LOW, 3),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images - 0.5)


class PaperUpper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.MaxPool2d(2), *_conv(PAPER_LOW, PAPER_HIGH, 3), *_conv(PAPER_HIGH, PAPER_HIGH, 3)
        )
        self.features = PAPER_HIGH

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.layers(f).mean(dim=(2, 3))


@register
class Semi3Model(SketchHashModel):
    method = "semi3"
    config_class = Semi3Config
    needs_edges = True

    def __init__(self, config: Semi3Config) -> None:
        super().__init__(config)
        if config.backbone == "efficientnet_lite0":
            trunk = efficientnet_lite0(pretrained=config.pretrained, num_classes=0)
            self.photo_lower = LiteLower(copy.deepcopy(trunk), config.shared_from)
            self.drawing_lower = LiteLower(trunk, config.shared_from)
            self.upper = LiteUpper(trunk, config.shared_from)
        else:
            self.photo_lower, self.drawing_lower = PaperLower(3), PaperLower(1)
            self.upper = PaperUpper()
        channels = self.photo_lower.channels
        self.coattention = (
            CoAttention(channels, config.reduction, config.coattention_gate)
            if config.coattention
            else None
        )
        self.embedding = nn.Sequential(
            nn.Linear(self.upper.features, HIDDEN),
            nn.BatchNorm1d(HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(HIDDEN, config.embed_dim),
        )
        self.hash_layer = nn.Sequential(
            nn.Linear(config.embed_dim, config.bits), nn.BatchNorm1d(config.bits)
        )
        if config.binarize == "itq":  # set by training.methods.semi3 (fit_itq); saved with it
            self.register_buffer("itq_mean", torch.zeros(config.embed_dim))
            self.register_buffer("itq_projection", torch.eye(config.embed_dim, config.bits))

    def edge_maps(self, photos: torch.Tensor) -> torch.Tensor | None:
        return super().edge_maps(photos) if self.config.edge_branch else None

    # ------------------------------------------------------------------ network
    def joint(self, f: torch.Tensor) -> torch.Tensor:
        """Bottom-layer maps of any branch to (B, embed_dim) joint embeddings."""
        return self.embedding(self.upper(f))

    def sketch_embedding(self, sketches: torch.Tensor) -> torch.Tensor:
        return self.joint(self.drawing_lower(sketches))

    def embeddings(
        self, sketches: torch.Tensor, photos: torch.Tensor, edges: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Training pass of all three branches: (sketch, photo, edge-map or None) embeddings.

        Sketches and edge maps share one pass through their common bottom layers, and all three
        one pass through the shared top layers (one batch for every BatchNorm).
        """
        n, m = len(sketches), len(photos)
        fp = self.photo_lower(photos)
        if not self.config.edge_branch:
            z = self.joint(torch.cat([self.drawing_lower(sketches), fp]))
            return z[:n], z[n:], None
        if edges is None:
            raise ConfigError("Semi3-Net's photo branch needs the photos' edge maps.")
        drawn = self.drawing_lower(torch.cat([sketches, edges]))
        fs, fe = drawn[:n], drawn[n:]
        if self.coattention is not None:
            fp, fe = self.coattention(fp, fe)
        z = self.joint(torch.cat([fs, fp, fe]))
        return z[:n], z[n : n + m], z[n + m :]

    def hash(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) joint embeddings to (B, K) real outputs whose signs are the code."""
        if self.config.binarize == "itq":
            return (embeddings - self.itq_mean) @ self.itq_projection
        return self.hash_layer(embeddings)

    def learned_hash(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The learned projection's outputs, whichever binarisation the codes use (training)."""
        return self.hash_layer(embeddings)

    def sketch_forward(self, sketches: torch.Tensor) -> torch.Tensor:
        return self.hash(self.sketch_embedding(sketches))

    def photo_embedding(self, photos: torch.Tensor, edges: torch.Tensor | None) -> torch.Tensor:
        """Retrieval path of a photo: its branch, co-attended from its edge map when enabled."""
        fp = self.photo_lower(photos)
        if not self.config.edge_branch:
            return self.joint(fp)
        if edges is None:
            raise ConfigError("Semi3-Net's photo branch needs the photos' edge maps.")
        if self.coattention is not None:
            fp = fp * self.coattention.weights(fp, self.drawing_lower(edges))[:, :, None, None]
        return self.joint(fp)

    def photo_forward(
        self, photos: torch.Tensor, edges: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.hash(self.photo_embedding(photos, edges))

    # ------------------------------------------------------------------ numpy boundary
    @torch.no_grad()
    def sketch_embeddings(self, sketches: np.ndarray) -> np.ndarray:
        """uint8 (n, S, S) normalised sketches to float32 (n, embed_dim) joint embeddings."""
        batch = sketch_tensor(sketches, self.sketch_size, self.device)
        return self._run(lambda: self.sketch_embedding(batch))

    @torch.no_grad()
    def photo_embeddings(self, photos: np.ndarray) -> np.ndarray:
        """uint8 (n, P, P, 3) prepared photos to float32 (n, embed_dim) joint embeddings."""
        batch = photo_tensor(photos, self.photo_size, self.device)
        return self._run(lambda: self.photo_embedding(batch, self.edge_maps(batch)))

    @torch.no_grad()
    def learned_hash_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """float32 (n, embed_dim) joint embeddings to the learned projection's (n, K) outputs."""
        t = torch.from_numpy(np.ascontiguousarray(embeddings, np.float32)).to(self.device)
        return self._run(lambda: self.learned_hash(t))
