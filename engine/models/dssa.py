"""DSSA: Deep Spatial-Semantic Attention for fine-grained sketch-based image retrieval.

Paper: J. Song, Q. Yu, Y.-Z. Song, T. Xiang, T. M. Hospedales, "Deep Spatial-Semantic Attention
for Fine-Grained Sketch-Based Image Retrieval", ICCV 2017 (section 3, eqs. 1-8).

One network is shared by the query sketch and the photo's edge map (a Siamese triplet network);
the photo side sees only the edge map (``needs_edges``: ``engine.edges`` computes it, or the
caller passes the data set's released one). Per input:
1. backbone to a C=256-channel map f: ``paper`` is Sketch-a-Net (conv1 64 15x15 stride 3, pool,
   conv2 128 5x5, pool, conv3-5 256 3x3 pad 1, ReLU after each), fed the ink (1 - x: paper = 0,
   so zero padding is paper), randomly initialised; ``efficientnet_lite0`` is the pretrained
   trunk (ImageNet-normalised grey input, like the baseline) whose 1280-channel head map is
   reduced to 256 channels by a 1x1 conv + BN + ReLU, so both backbones give the paper's width.
2. soft spatial attention (eq. 1-3): two 1x1 convs (256 -> 256, ReLU, -> 1: the hidden width is
   not given; we keep the channel count), softmax over the H x W locations, and the attended map
   f + a * f (``shortcut``; without it a * f, the ablation of Table 5). ``attention=False`` skips
   the module (attended map = f, Table 2).
3. FC6 512 (ReLU, dropout) and FC7 256 (eq. 4). ``paper``: FC6 reads the flattened 256 x 7 x 7
   pool5 of the attended map (an adaptive average pool makes 7 x 7 at any input size; at 225 px it
   is the identity). ``efficientnet_lite0``: its map is S/32 px wide (4 at 128 px), so FC6 reads
   the attended map average-pooled to 4 x 4 and flattened: the layout of the drawing is what
   tells one shoe from another, and the paper's FC6 reads a spatial map too.
4. coarse-fine fusion (eq. 5, ``fusion``): the globally average-pooled attended map (coarse,
   256-d) concatenated with FC7 (fine, 256-d). The paper does not say how the two parts are
   scaled; we L2-normalise each part and the concatenation (so neither dominates by magnitude
   and the feature is unit length, 512-d). Without fusion, the feature is the L2-normalised FC7.
5. HOLEF (eqs. 6-8): D_H(x, y) = sum_ij W_ij (x_i - y_j)^2 with W a learnable D x D matrix
   initialised to the identity (``holef``; False: squared Euclidean distance, W absent). W lives
   in the model (``holef_weight``) because it is needed after training too: to re-rank a binary
   shortlist by the exact HOLEF distance (``rerank_features``: the indexer stores each photo's
   feature as float16 beside its code, ``encode_photos_and_features`` giving both from one
   forward pass, and ``engine.searcher`` re-ranks with ``feature_distances``).
   ``holef_distance`` / ``holef_pairwise`` compute it by
   expanding the square, sum_i x_i^2 r_i + sum_j y_j^2 c_j - 2 x^T W y (r, c: row and column sums
   of W), never materialising a batch of D x D matrices.
6. hash layer (not in the paper, which ranks real-valued features): a linear projection D -> K
   followed by BatchNorm (unit features of line drawings share a large common component; without
   centring every bit takes the same sign for every input); the sign of its output is the K-bit
   code, BatchNorm's running statistics make it a fixed affine map at search time. Training
   (``training.methods.dssa``) relaxes the sign with tanh and adds a quantisation term, and ranks
   the relaxed codes with a triplet loss beside the HOLEF loss on the features.
7. edge maps are drawn like sketches (``canonical_edges``, not in the paper): each edge map goes
   through ``engine.sketch.normalize_sketch`` (the query sketch's own normalisation: framed on
   its bounding box, lines redrawn 3 px wide at 256) before the network. Raw edge maps have
   1 px lines that fade to grey at 128-160 px and a framing unlike the canonical sketch's; this
   makes both inputs of the shared network the same kind of picture. An edge map with no edge
   (a flat photo) stays blank paper. ``canonical_edges=False`` feeds the raw maps (the paper).
8. ``codes_from="features"`` (with ``codes="fitted"``, ``engine.models.fitted``): the code is
   the sign of the D-d feature itself, centred per domain and projected by PCA + ITQ to K bits,
   fitted after training (``sketch-search fit-codes --from-features``); the hash layer is then
   unused. Measured on QMUL-Shoe with the shipped dssa-shoes-64 (engine edge maps, fitted on
   the training split's photos): Hamming acc@1/acc@10 4.0%/34.6% (26 distinct codes among the
   115 test photos) -> 14.8%/57.7% (115 distinct); the features' own cosine ranking is
   27.0%/60.0%. The hash layer, trained beside the triplet loss, collapses the features' fine
   detail to a few shared codes; the features' principal directions keep it.
9. HOG term of the re-ranking distance (``hog_weight`` > 0; not in the paper, which ranks by
   HOLEF alone): each stored feature is followed by the drawing's HOG (``engine.hog``, of the
   very drawing the network sees: the normalised sketch, or the canonical edge map), centred
   and projected by a PCA to ``hog_dim`` (256) dimensions, unit length (``HogTerm``). The
   distance is HOLEF / s_0 + hog_weight x (1 - HOG cosine) / s_1, with s_0, s_1 the spread of
   each over the training sketch-photo pairs (``training.fit_codes.fit_hog_term``: by the
   trainer with fitted codes, or post hoc by ``sketch-search fit-codes --hog-weight``; a new
   model with neither is refused): a fixed distance of each pair, so a shortlist ranks as
   the whole gallery does. The HOG's blocks are ``hog_block`` (3) cells a side, chosen on the
   training splits (DEVELOPERS.md). Measured on the test splits with engine edge maps,
   re-ranked acc@1/acc@10 (weight 1, chosen before measuring as the two spreads made equal):
   with the networks shipped before it, QMUL-Shoe 25.2%/60.0% -> 33.0%/72.2% and QMUL-Chair
   44.3%/83.5% -> 59.8%/92.8% (2 x 2 blocks); with the networks of stop 25, 35.7%/80.0% and
   66.0%/93.8%; as shipped now (10.), 53.9%/87.8% and 79.4%/97.9%. The HOG of the canonical
   edge maps alone gave 27.8%/68.7% and 52.6%/88.7% (2 x 2 blocks), more than the classical
   baseline (17.4%/63.5%, 48.5%/76.3%): a free-hand sketch and an edge map drawn alike share
   their coarse gradient layout, which the network's learnt features, from 304 and 200
   training pairs, keep only partly.
10. ``edge_threshold`` (not in the paper): the gradient threshold of the engine's edge maps
   (``engine.edges``; the other methods keep its 0.4). Chosen on the training splits by the HOG
   of the canonical edge maps alone (untrained, so unbiased there): at 0.4 QMUL-Shoe 8.2%/43.8%
   and QMUL-Chair 45.5%/74.5%, at 0.2 11.5%/44.7% and 55.0%/83.5%, as close to the released
   edge maps' 12.5%/44.1% and 53.5%/87.5% as any setting tried: fainter edges (the seams and
   panels a sketch draws) are kept. The threshold is part of the model, so a checkpoint indexes
   photos with the edges its network trained on; older checkpoints keep 0.4.
Inputs are ``image_size`` square for both sides (default 224: EfficientNet's native size, one
pixel from the paper's 225 crop of 256).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.codes import pack_codes
from engine.errors import ConfigError, SketchError
from engine.hog import drawing_hog, hog_dim
from engine.models.backbones import (
    EFFICIENTNET_LITE0_FEATURES,
    ImageNetNormalize,
    efficientnet_lite0,
)
from engine.models.base import ModelConfig, SketchHashModel, photo_tensor, sketch_tensor
from engine.models.fitted import MODULE_NAME
from engine.models.registry import register
from engine.sketch import SKETCH_SIZE, normalize_sketch

CHANNELS = 256  # conv5 width of Sketch-a-Net; the attended map of both backbones
FC6, FC7 = 512, 256
POOL5_SIDE = 7
LITE_GRID = 4
LITE_STAGES = 7  # EfficientNet-Lite0's stages (timm's ``blocks``)
CODES_FROM = ("hash", "features")  # what the code is the sign of: the hash layer, or the features
HOG_MODULE = "hog_fit"  # the model attribute holding the fitted HOG term (state-dict prefix)


def holef_distance(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """(n,) D_H(x_n, y_n) = sum_ij W_ij (x_ni - y_nj)^2 of paired rows; W None: squared L2."""
    if weight is None:
        return (x - y).pow(2).sum(dim=1)
    rows, cols = weight.sum(dim=1), weight.sum(dim=0)
    return x.pow(2) @ rows + y.pow(2) @ cols - 2.0 * ((x @ weight) * y).sum(dim=1)


def holef_pairwise(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """(n, m) D_H(x_n, y_m) for every pair of rows; W None: squared Euclidean distance."""
    if weight is None:
        weight = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    rows, cols = weight.sum(dim=1), weight.sum(dim=0)
    return (x.pow(2) @ rows)[:, None] + (y.pow(2) @ cols)[None, :] - 2.0 * (x @ weight) @ y.T


@dataclass(frozen=True)
class DSSAConfig(ModelConfig):
    pretrained: bool = True  # efficientnet_lite0 only: start from ImageNet weights
    attention: bool = True  # soft spatial attention (Table 2)
    shortcut: bool = True  # f + a * f rather than a * f (Table 5)
    fusion: bool = True  # coarse-fine fusion (Table 3)
    holef: bool = True  # HOLEF distance with a learnt W; False: squared Euclidean (Table 4)
    dropout: float = 0.5  # after FC6, as in Sketch-a-Net
    canonical_edges: bool = True  # edge maps normalised like sketches (see the docstring, 7.)
    codes_from: str = "hash"  # "features": fitted codes of the features themselves (8.)
    hog_weight: float = 0.0  # > 0: re-ranking adds the drawings' HOG distance (9.), fitted
    hog_dim: int = 256  # PCA dimensions of the HOG term (with hog_weight)
    hog_block: int = 3  # cells a side of the HOG term's blocks (the baseline's HOG: 2)
    edge_threshold: float = 0.4  # the engine's edge maps' threshold (10.; the others' is 0.4)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone == "efficientnet_lite0":
            if not 96 <= self.image_size <= 512 or self.image_size % 32:
                raise ConfigError(
                    "dssa image_size must be a multiple of 32 between 96 and 512 with the "
                    "efficientnet_lite0 backbone."
                )
        elif not 96 <= self.image_size <= 512:
            raise ConfigError("dssa image_size must be between 96 and 512 (the paper uses 225).")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dssa dropout must be in [0, 1).")
        if self.codes_from not in CODES_FROM:
            raise ConfigError(f"dssa codes_from must be one of {CODES_FROM}.")
        if self.codes_from == "features" and self.codes != "fitted":
            raise ConfigError('dssa codes from the features must be fitted (codes="fitted").')
        if not 0.0 <= self.hog_weight <= 100.0:
            raise ConfigError("dssa hog_weight must be between 0 and 100.")
        if self.hog_block not in (1, 2, 3, 4):
            raise ConfigError("dssa hog_block must be 1, 2, 3 or 4 cells.")
        if not 0.0 < self.edge_threshold <= 4.0:
            raise ConfigError("dssa edge_threshold must be in (0, 4].")
        if not 1 <= self.hog_dim <= hog_dim(self.hog_block):
            raise ConfigError(f"dssa hog_dim must be between 1 and {hog_dim(self.hog_block)}.")

    @property
    def feature_dim(self) -> int:
        return CHANNELS + FC7 if self.fusion else FC7

    @property
    def rerank_dim(self) -> int:
        """Width of a stored re-ranking feature: the network's, then the HOG term's."""
        return self.feature_dim + (self.hog_dim if self.hog_weight > 0 else 0)


class HogTerm(nn.Module):
    """The fitted HOG part of DSSA's re-ranking distance (``hog_weight`` > 0; docstring, 9.):
    a drawing's unit HOG, centred by ``mean`` and projected on ``basis`` (PCA, fitted on the
    training drawings), unit length again; ``scales`` (2,): the spread of the network's distance
    and of the HOG cosine distance over training sketch-photo pairs, which put both on one
    scale. Unfitted (``fitted`` 0) it refuses to answer rather than rank by zeros."""

    def __init__(self, dim: int, block: int) -> None:
        super().__init__()
        self.block = block
        self.register_buffer("mean", torch.zeros(hog_dim(block)))
        self.register_buffer("basis", torch.zeros(hog_dim(block), dim))
        self.register_buffer("scales", torch.ones(2))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))

    def load(self, mean: np.ndarray, basis: np.ndarray, scales: tuple[float, float]) -> None:
        if min(scales) <= 0:
            raise ConfigError("The HOG term's distance scales must be positive.")
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.basis.copy_(torch.as_tensor(basis, dtype=torch.float32))
            self.scales.copy_(torch.as_tensor(scales, dtype=torch.float32))
            self.fitted.fill_(1)

    def project(self, hog: np.ndarray) -> np.ndarray:
        """float32 (n, dim) unit projections of unit HOG rows (n, hog_dim(block))."""
        if not int(self.fitted):
            raise ConfigError(
                "This DSSA model's HOG re-ranking term was never fitted (sketch-search fit-codes "
                "--hog-weight fits it)."
            )
        mean, basis = self.mean.cpu().numpy(), self.basis.cpu().numpy()
        p = (np.asarray(hog, np.float32) - mean) @ basis
        return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)


class SketchANet(nn.Module):
    """Sketch-a-Net conv1-conv5 (conv5 before pool5): (B, 1, S, S) ink to (B, 256, h, w)."""

    def __init__(self) -> None:
        super().__init__()

        def conv(cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, stride, pad), nn.ReLU(inplace=True)]

        self.layers = nn.Sequential(
            *conv(1, 64, 15, stride=3),
            nn.MaxPool2d(3, 2),
            *conv(64, 128, 5),
            nn.MaxPool2d(3, 2),
            *conv(128, 256, 3, pad=1),
            *conv(256, 256, 3, pad=1),
            *conv(256, CHANNELS, 3, pad=1),
        )

    def forward(self, drawings: torch.Tensor) -> torch.Tensor:
        return self.layers(1.0 - drawings)


class LiteTrunk(nn.Module):
    """Pretrained EfficientNet-Lite0 head map reduced to 256 channels: (B, 256, S/32, S/32)."""

    def __init__(self, pretrained: bool) -> None:
        super().__init__()
        self.normalize = ImageNetNormalize()
        self.trunk = efficientnet_lite0(pretrained=pretrained, num_classes=0)
        self.reduce = nn.Sequential(
            nn.Conv2d(EFFICIENTNET_LITE0_FEATURES, CHANNELS, 1, bias=False),
            nn.BatchNorm2d(CHANNELS),
            nn.ReLU(inplace=True),
        )

    def forward(self, drawings: torch.Tensor) -> torch.Tensor:
        return self.top(self.bottom(drawings))

    def bottom(self, drawings: torch.Tensor, stages: int = LITE_STAGES) -> torch.Tensor:
        """Stem and the first ``stages`` stages: (B, 1, S, S) to that stage's map (the seven:
        the (B, 320, S/32, S/32) stage-7 map)."""
        t = self.trunk
        return t.blocks[:stages](t.bn1(t.conv_stem(self.normalize(drawings))))

    def top(self, maps: torch.Tensor, stages: int = LITE_STAGES) -> torch.Tensor:
        """From the map after ``stages`` stages: the remaining stages, the 1280-channel head
        conv of the trunk, then the reduction to 256 channels."""
        t = self.trunk
        return self.reduce(t.bn2(t.conv_head(t.blocks[stages:](maps))))


class SpatialAttention(nn.Module):
    """Soft spatial attention: a = softmax over locations of conv1x1(ReLU(conv1x1(f)))."""

    def __init__(self, channels: int, shortcut: bool) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.score = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True), nn.Conv2d(channels, 1, 1)
        )

    def weights(self, f: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) attention weights summing to 1 over the locations of each map."""
        b, _, h, w = f.shape
        return torch.softmax(self.score(f).view(b, h * w), dim=1).view(b, 1, h, w)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        attended = self.weights(f) * f
        return f + attended if self.shortcut else attended


@register
class DSSAModel(SketchHashModel):
    method = "dssa"
    config_class = DSSAConfig
    needs_edges = True
    rerank_features = True  # the HOLEF distance on stored features re-ranks a Hamming shortlist
    expands = False  # one particular photo is sought: its neighbours are other shoes
    asymmetric = False  # re-ranked by HOLEF on stored features instead
    full_precision_prefixes = (MODULE_NAME + ".", HOG_MODULE + ".")

    def __init__(self, config: DSSAConfig) -> None:
        super().__init__(config)
        paper = config.backbone == "paper"
        self.backbone = SketchANet() if paper else LiteTrunk(config.pretrained)
        self.attention = SpatialAttention(CHANNELS, config.shortcut) if config.attention else None
        fc6_in = CHANNELS * (POOL5_SIDE if paper else LITE_GRID) ** 2
        self.pool5 = (
            nn.Sequential(nn.MaxPool2d(3, 2), nn.AdaptiveAvgPool2d(POOL5_SIDE))
            if paper
            else nn.AdaptiveAvgPool2d(LITE_GRID)
        )
        self.fc = nn.Sequential(
            nn.Linear(fc6_in, FC6),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(FC6, FC7),
        )
        dim = config.feature_dim
        self.hash_layer = nn.Sequential(nn.Linear(dim, config.bits), nn.BatchNorm1d(config.bits))
        self.holef_weight = nn.Parameter(torch.eye(dim)) if config.holef else None
        self.hog_fit = HogTerm(config.hog_dim, config.hog_block) if config.hog_weight > 0 else None

    # ------------------------------------------------------------------ network
    def features(self, drawings: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) sketches or edge maps in [0, 1] to (B, D) unit-length features."""
        return self.head_features(self.trunk_maps(drawings))

    def trunk_maps(self, drawings: torch.Tensor, stages: int = LITE_STAGES) -> torch.Tensor:
        """The part of the network a frozen-trunk training can compute once and cache: the
        pretrained trunk's map after its first ``stages`` stages (``efficientnet_lite0``; all
        seven by default); for ``paper``, the input."""
        if isinstance(self.backbone, LiteTrunk):
            return self.backbone.bottom(drawings, stages)
        return drawings

    def head_features(self, maps: torch.Tensor, stages: int = LITE_STAGES) -> torch.Tensor:
        """``trunk_maps(..., stages)`` output to (B, D) unit-length features (the rest of the
        network)."""
        lite = isinstance(self.backbone, LiteTrunk)
        f = self.backbone.top(maps, stages) if lite else self.backbone(maps)
        if self.attention is not None:
            f = self.attention(f)
        fine = self.fc(self.pool5(f).flatten(1))
        if not self.config.fusion:
            return F.normalize(fine, dim=1)
        coarse = F.normalize(f.mean(dim=(2, 3)), dim=1)
        return F.normalize(torch.cat([coarse, F.normalize(fine, dim=1)], dim=1), dim=1)

    def hash(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) features to (B, K) real outputs whose signs are the code."""
        return self.hash_layer(features)

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(n, m) HOLEF (or squared Euclidean) distances between two sets of features."""
        weight = None if self.holef_weight is None else self.holef_weight.to(x.dtype)
        return holef_pairwise(x, y, weight)

    @property
    def raw_dim(self) -> int:
        """K hash outputs, or the D-d features when the codes are fitted on them."""
        return self.config.feature_dim if self.config.codes_from == "features" else self.config.bits

    def outputs(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) features to the raw outputs the code is made from (``codes_from``)."""
        return features if self.config.codes_from == "features" else self.hash(features)

    def sketch_forward(self, sketches: torch.Tensor) -> torch.Tensor:
        return self.outputs(self.features(sketches))

    def photo_forward(
        self, photos: torch.Tensor, edges: torch.Tensor | None = None
    ) -> torch.Tensor:
        if edges is None:
            raise ConfigError("DSSA ranks photos by their edge maps; pass the photos' edge maps.")
        return self.outputs(self.features(edges))

    # ------------------------------------------------------------------ edge maps
    def canonical_edges(self, edges: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W) edge maps (white paper) drawn like canonical sketches, at photo size."""
        arr = np.asarray(edges, np.uint8)
        if not self.config.canonical_edges:
            return arr
        out = []
        for edge in arr:
            try:
                out.append(normalize_sketch(edge, SKETCH_SIZE))
            except SketchError:  # no edge at all: blank paper, of the same size as the others
                out.append(np.full((SKETCH_SIZE, SKETCH_SIZE), 255, np.uint8))
        batch = sketch_tensor(np.stack(out), self.photo_size, torch.device("cpu"))
        return batch[:, 0].mul(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()

    def raw_edge_maps(self, photos: torch.Tensor) -> torch.Tensor:
        """The engine's edge maps of a (B, 3, H, W) photo batch in [0, 1] at this model's
        ``edge_threshold``: (B, 1, H, W), 1 paper, 0 edge."""
        from engine.edges import edge_maps  # local, as the base's: kornia only when needed

        return edge_maps(photos, self.config.edge_threshold)

    def edge_maps(self, photos: torch.Tensor) -> torch.Tensor:
        """The engine's edge maps of a photo batch, drawn like sketches (``canonical_edges``)."""
        raw = self.raw_edge_maps(photos)
        if not self.config.canonical_edges:
            return raw
        arr = raw[:, 0].clamp(0, 1).mul(255.0).round().to(torch.uint8).cpu().numpy()
        return sketch_tensor(self.canonical_edges(arr), self.photo_size, photos.device)

    # ------------------------------------------------------------------ numpy boundary
    @torch.no_grad()
    def embed_photos(
        self, photos: np.ndarray, edges: np.ndarray | None = None, *, raw: bool = False
    ) -> np.ndarray:
        """As the base; given ``edges`` (e.g. released ones) are drawn like sketches first."""
        edges = None if edges is None else self.canonical_edges(edges)
        return super().embed_photos(photos, edges, raw=raw)

    def sketch_drawings(self, sketches: np.ndarray) -> torch.Tensor:
        """The drawings the network sees of uint8 (n, S, S) normalised sketches."""
        return sketch_tensor(sketches, self.sketch_size, self.device)

    def photo_drawings(self, photos: np.ndarray, edges: np.ndarray | None) -> torch.Tensor:
        """The drawings the network sees of photos: their edge maps drawn like sketches."""
        if edges is not None:
            return sketch_tensor(self.canonical_edges(edges), self.photo_size, self.device)
        return self.edge_maps(photo_tensor(photos, self.photo_size, self.device))

    @torch.no_grad()
    def sketch_features(self, sketches: np.ndarray) -> np.ndarray:
        """uint8 (n, S, S) normalised sketches to float32 (n, rerank_dim) re-ranking features."""
        return self._rerank_features(self.sketch_drawings(sketches))

    @torch.no_grad()
    def photo_features(self, photos: np.ndarray, edges: np.ndarray | None = None) -> np.ndarray:
        """uint8 (n, P, P, 3) photos (or their uint8 (n, P, P) edge maps) to float32
        (n, rerank_dim) re-ranking features."""
        return self._rerank_features(self.photo_drawings(photos, edges))

    @torch.no_grad()
    def encode_sketches_and_features(self, sketches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(packed codes (n, K/8), float32 (n, rerank_dim) features) of normalised sketches,
        one pass."""
        return self._codes_and_features(self.sketch_drawings(sketches), "sketch")

    @torch.no_grad()
    def encode_photos_and_features(
        self, photos: np.ndarray, edges: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(packed codes (n, K/8), float32 (n, rerank_dim) features) of prepared photos, one
        pass."""
        return self._codes_and_features(self.photo_drawings(photos, edges), "photo")

    def _rerank_features(self, drawings: torch.Tensor) -> np.ndarray:
        return self._with_hog(self._run(lambda: self.features(drawings)), drawings)

    def _with_hog(self, features: np.ndarray, drawings: torch.Tensor) -> np.ndarray:
        """The network's features, then (``hog_weight`` > 0) the drawings' fitted HOG term."""
        if self.hog_fit is None:
            return np.ascontiguousarray(features)
        hog = self.hog_fit.project(drawing_hog(drawings, self.hog_fit.block))
        return np.ascontiguousarray(np.concatenate([features, hog], axis=1), dtype=np.float32)

    def _codes_and_features(
        self, drawings: torch.Tensor, domain: str
    ) -> tuple[np.ndarray, np.ndarray]:
        self.check_codes()
        both = self._run(lambda: self._features_and_outputs(drawings, domain))
        dim = self.config.feature_dim
        return pack_codes(both[:, dim:]), self._with_hog(both[:, :dim], drawings)

    def _features_and_outputs(self, drawings: torch.Tensor, domain: str) -> torch.Tensor:
        f = self.features(drawings)
        return torch.cat([f, self.project(self.outputs(f), domain)], dim=1)

    def feature_distances(self, queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        """float32 (n, m) re-ranking distances of numpy features (float16 storage is fine):
        HOLEF, or with the HOG term (docstring, 9.) HOLEF / s_0 + hog_weight x (1 - HOG
        cosine) / s_1. Each pair's distance depends on that pair alone, so a shortlist and the
        whole gallery rank alike."""
        dim = self.config.feature_dim
        q, g = np.asarray(queries, np.float32), np.asarray(gallery, np.float32)
        with torch.no_grad():
            qt = torch.from_numpy(np.ascontiguousarray(q[:, :dim])).to(self.device)
            gt = torch.from_numpy(np.ascontiguousarray(g[:, :dim])).to(self.device)
            learnt = self.distance(qt, gt).cpu().numpy()
        if self.hog_fit is None:
            return learnt
        s_learnt, s_hog = (float(v) for v in self.hog_fit.scales)
        hog = 1.0 - q[:, dim:] @ g[:, dim:].T
        return learnt / s_learnt + self.config.hog_weight * hog / s_hog
