"""The interface every retrieval method implements, and the config every method's config extends.

Tensor conventions inside models (callers never normalise):
- sketches and edge maps: float (B, 1, S, S) in [0, 1], white paper = 1, ink = 0;
- photos: float (B, 3, P, P) RGB in [0, 1].
A model maps each to a real-valued raw (B, D) output (``sketch_forward``/``photo_forward``, what
training works on). With ``codes="sign"`` (the default) D == K and the signs of the raw output are
the K-bit code; with ``codes="fitted"`` (``engine.models.fitted``) the raw output of each domain
is centred by that domain's fitted mean and projected to K dims (PCA + ITQ), and the signs of the
projection are the code. ``embed_*`` return the outputs whose signs are the code (``raw=True``:
the raw outputs, e.g. to fit on), ``encode_*`` the packed codes.

At the numpy boundary (``embed_*`` and ``encode_*``) sketches are uint8 (n, S, S) arrays from
``engine.sketch.normalize_sketch`` and photos uint8 (n, P, P, 3) arrays from
``engine.images.prepare_photo``; both are resized on the device if the model wants another size.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from engine.codes import check_bits, pack_codes
from engine.errors import ConfigError
from engine.models.fitted import CODE_FIT, CODES, MODULE_NAME, FittedCodes

BACKBONES = ("paper", "efficientnet_lite0")


@dataclass(frozen=True)
class ModelConfig:
    """Options shared by every method; a method subclasses this with its own frozen fields."""

    bits: int = 64
    backbone: str = "efficientnet_lite0"
    image_size: int = 224  # square input side of both domains; methods narrow the range
    codes: str = "sign"  # "sign" of the raw output, or "fitted" (engine.models.fitted)
    code_fit: str = "photos"  # fitted codes: PCA + ITQ on the photos' centred outputs, or "both"

    def __post_init__(self) -> None:
        check_bits(self.bits)
        if self.codes not in CODES:
            raise ConfigError(f"Unknown codes '{self.codes}'; choose one of {CODES}.")
        if self.code_fit not in CODE_FIT:
            raise ConfigError(f"Unknown code_fit '{self.code_fit}'; choose one of {CODE_FIT}.")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"Unknown backbone '{self.backbone}'; choose one of {BACKBONES}.")
        if not 32 <= self.image_size <= 1024:
            raise ConfigError(f"image_size {self.image_size} is outside 32..1024 pixels.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Build a config from stored values, refusing keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"Unknown option(s) for {cls.__name__}: {', '.join(unknown)}.")
        return cls(**dict(values))


class SketchHashModel(nn.Module, ABC):
    """Base of every method: a sketch encoder and a photo encoder into one K-dimensional space."""

    method: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    needs_edges: ClassVar[bool] = False
    """True when the photo side also takes the photo's edge map (computed by engine.edges)."""
    rerank_features: ClassVar[bool] = False
    """True when the method ranks by an exact distance on real-valued features as well as by its
    codes: it then defines ``encode_photos_and_features`` and ``encode_sketches_and_features``
    (packed codes and float32 (n, D) features from one forward pass) and
    ``feature_distances(queries, gallery)`` ((n, m) distances, smaller is closer); the indexer
    stores the photo features (float16) and the searcher can re-rank a Hamming shortlist."""
    expands: ClassVar[bool] = True
    """False for a fine-grained method (one right photo per sketch): query expansion would pull the
    query towards its neighbours, other products of the same kind, so the searcher leaves it off."""
    asymmetric: ClassVar[bool] = True
    """True when a search ranks its Hamming shortlist by the asymmetric distance to the sketch's
    unbinarised output (``engine.asymmetric``): every category-level method. False for
    fine-grained DSSA, which re-ranks by its own exact distance (``rerank_features``)."""
    can_imagine: ClassVar[bool] = False
    """True when the model has ``imagine(sketches) -> uint8 (n, P, P, 3)`` photos (GDH's G_I)."""
    full_precision_prefixes: ClassVar[tuple[str, ...]] = (MODULE_NAME + ".",)
    """State-dict keys kept float32 in a float16 checkpoint (fitted values must reload exactly)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{self.method} needs a {self.config_class.__name__}.")
        self.config = config
        if config.codes == "sign" and self.raw_dim != config.bits:
            raise ConfigError(
                f"{self.method} outputs {self.raw_dim} values, not {config.bits}: its codes must "
                'be fitted (codes="fitted").'
            )
        self.fitted_codes: FittedCodes | None = None
        if config.codes == "fitted":
            self.fitted_codes = FittedCodes(self.raw_dim, config.bits)

    @property
    def photo_values(self) -> bool:
        """True when the indexer stores each photo's unbinarised output (K float16 values)
        beside its code and a search ranks its Hamming shortlist against them instead of the
        code (``engine.asymmetric``): a category-level model whose codes are fitted (PCA and
        ITQ, ``codes="fitted"``), whose outputs are balanced rotations that keep the cosine
        of the features they came from. Sign codes of a network trained towards +-1 gain
        little or lose (DEVELOPERS.md, stop 27: baseline-64 0.335 -> 0.288); DSSA re-ranks
        by its own stored features (``rerank_features``)."""
        return self.asymmetric and self.fitted_codes is not None

    # ----------------------------------------------------------------- what a method defines
    @property
    def sketch_size(self) -> int:
        """Side of the square sketch input, in pixels (``image_size`` unless a method differs)."""
        return self.config.image_size

    @property
    def photo_size(self) -> int:
        """Side of the square photo input, in pixels (``image_size`` unless a method differs)."""
        return self.config.image_size

    @property
    def raw_dim(self) -> int:
        """Width D of the raw outputs: ``bits`` unless a method declares a wider one (which
        then needs fitted codes). Read from the config only: the base reads it in __init__."""
        return self.config.bits

    @abstractmethod
    def sketch_forward(self, sketches: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) sketches in [0, 1] to (B, D) real-valued raw outputs."""

    @abstractmethod
    def photo_forward(
        self, photos: torch.Tensor, edges: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 3, P, P) photos (and (B, 1, P, P) edge maps if ``needs_edges``) to (B, D)."""

    # ----------------------------------------------------------------- shared behaviour
    @property
    def bits(self) -> int:
        return self.config.bits

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def edge_maps(self, photos: torch.Tensor) -> torch.Tensor | None:
        """Edge maps of a photo batch when the method needs them, else None."""
        if not self.needs_edges:
            return None
        from engine.edges import edge_maps  # local: only methods with an edge branch pay for it

        return edge_maps(photos)

    def project(self, outputs: torch.Tensor, domain: str) -> torch.Tensor:
        """Raw (B, D) outputs of ``domain`` ("sketch" or "photo") to the (B, K) outputs whose
        signs are the code: themselves with sign codes, the fitted projection otherwise."""
        if self.fitted_codes is None:
            return outputs
        return self.fitted_codes(outputs, domain)

    def check_codes(self) -> None:
        """Raise CodesNotFittedError if this model's codes are fitted but not fitted yet."""
        if self.fitted_codes is not None:
            self.fitted_codes.check()

    @torch.no_grad()
    def embed_sketches(self, sketches: np.ndarray, *, raw: bool = False) -> np.ndarray:
        """uint8 (n, S, S) normalised sketches to float32 (n, K) outputs whose signs are the
        code; ``raw``: the (n, D) raw outputs."""
        if not raw:
            self.check_codes()
        batch = sketch_tensor(sketches, self.sketch_size, self.device)
        out = self.sketch_forward
        return self._run(lambda: out(batch) if raw else self.project(out(batch), "sketch"))

    @torch.no_grad()
    def embed_photos(
        self, photos: np.ndarray, edges: np.ndarray | None = None, *, raw: bool = False
    ) -> np.ndarray:
        """uint8 (n, P, P, 3) prepared photos to float32 (n, K) outputs whose signs are the
        code; ``raw``: the (n, D) raw outputs.

        ``edges``: uint8 (n, P, P) edge maps (white paper) to use instead of computing them with
        ``engine.edges``, e.g. a data set's released ones; ignored unless ``needs_edges``.
        """
        if not raw:
            self.check_codes()
        batch = photo_tensor(photos, self.photo_size, self.device)
        if edges is not None and self.needs_edges:
            edge_batch = sketch_tensor(edges, self.photo_size, self.device)
        else:
            edge_batch = self.edge_maps(batch)
        out = self.photo_forward
        return self._run(
            lambda: out(batch, edge_batch) if raw else self.project(out(batch, edge_batch), "photo")
        )

    def encode_sketches(self, sketches: np.ndarray) -> np.ndarray:
        """uint8 (n, S, S) normalised sketches to packed uint8 codes (n, K/8)."""
        return pack_codes(self.embed_sketches(sketches))

    def encode_photos(self, photos: np.ndarray) -> np.ndarray:
        """uint8 (n, P, P, 3) prepared photos to packed uint8 codes (n, K/8)."""
        return pack_codes(self.embed_photos(photos))

    def _run(self, forward) -> np.ndarray:
        """Run an inference forward pass in eval mode.

        An eval model's mode is never touched, so threads may share it (the searcher and the
        indexer do). A model in training mode (evaluation during training, one thread) is
        switched to eval for the call and back.
        """
        if not self.training:
            return forward().float().cpu().numpy()
        self.eval()
        try:
            out = forward()
        finally:
            self.train()
        return out.float().cpu().numpy()


def sketch_tensor(sketches: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """uint8 (n, S, S) sketches (or one (S, S)) to a float (n, 1, size, size) batch in [0, 1]."""
    arr = np.asarray(sketches)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise ConfigError(f"Sketches must be uint8 (n, S, S); got {arr.dtype} {arr.shape}.")
    return _to_unit_tensor(arr[:, None], size, device)


def photo_tensor(photos: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """uint8 (n, P, P, 3) photos (or one) to a float (n, 3, size, size) RGB batch in [0, 1]."""
    arr = np.asarray(photos)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ConfigError(f"Photos must be uint8 (n, P, P, 3); got {arr.dtype} {arr.shape}.")
    return _to_unit_tensor(arr.transpose(0, 3, 1, 2), size, device)


def _to_unit_tensor(arr: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """uint8 (n, C, H, W) to float [0, 1] on ``device``, resized to (size, size) if needed."""
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device).float().div_(255.0)
    if t.shape[-2:] != (size, size):
        t = torch.nn.functional.interpolate(
            t, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return t
