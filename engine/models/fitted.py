"""Fitted binarisation: per-domain centring and a PCA + ITQ projection, stored in the model.

Every method's codes are "sign" codes by default: bit i is 1 where output i is > 0. A model whose
config says ``codes="fitted"`` makes them from its raw (B, D) outputs in three fitted steps:

1. centring per domain: subtract the mean raw output of training sketches from a sketch's output
   and the mean of training photos from a photo's (the two domains sit apart in the raw space;
   issue 16 measured that centring each alone lifts zero-shot retrieval);
2. PCA to K = ``bits`` dimensions (a rotation when D == K; a reduction when a method declares a
   wider raw output, e.g. 1280 pooled features);
3. an ITQ rotation (Gong and Lazebnik, CVPR 2011): the orthogonal R minimising the quantisation
   loss ||B - V R||^2 over the centred, PCA-projected outputs V, alternating B = sign(V R) and
   R from the SVD of B^T V (orthogonal Procrustes), from a random rotation with a fixed seed.

So ``output = (raw - domain_mean) @ projection`` with ``projection`` (D, K) = PCA basis @ R, and
the code is its sign. The rotation (and PCA) is fitted on the centred outputs of photos only
(``code_fit="photos"``, the default) or of both domains stacked (``"both"``); ``"sketches"``
takes the PCA basis from the sketches' outputs and fits the rotation on both domains: for a
model whose sketch side was trained into a fixed photo space (``anchor``), the directions the
sketches actually reach are the ones worth bits (measured on the unseen20 protocol with one
such encoder: binary mAP 0.395 against 0.360 for photos, doodles 0.287 against 0.269).
Measured on the Sketchy test split (64/128-bit codes of the five shipped category-level
models, fitted on the train split, binary mAP): photos 0.318 / 0.413 / 0.346 / 0.228 / 0.037
against both 0.310 / 0.414 / 0.350 / 0.223 / 0.032 (default, gdh-128, gdh-64, semi3-64,
dsh-64): photos as good or better on 3 of 5, by margins within noise; and the photo codes are
what a library holds.

``fit_codes`` is the pure numpy fit (float64 inside, float32 out); ``fit_model_codes`` runs a
model over uint8 sketches and photos (raw outputs, eval mode, no augmentation) and fits it, as a
generator of ``FitProgress``. ``FittedCodes`` holds the fit as buffers of the model (so the model
id covers them, and they are saved with the weights: float32 even in a float16 checkpoint, so
they reload bit-exactly) and applies it. A model with fitted codes that has not been fitted yet
refuses to make codes (``CodesNotFittedError``): a zero projection would make every code the
same.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine.errors import Cancelled, CodesNotFittedError, ConfigError

log = logging.getLogger(__name__)

CODES = ("sign", "fitted")
CODE_FIT = ("both", "photos", "sketches")
DOMAINS = ("sketch", "photo")
ITQ_ITERATIONS = 50
ITQ_SEED = 0
MODULE_NAME = "fitted_codes"  # the model attribute, so the state-dict key prefix is fixed
FIT_BATCH = 64


@dataclass(frozen=True)
class CodeFit:
    """A fitted binarisation: ``output = (raw - <domain>_mean) @ projection``."""

    sketch_mean: np.ndarray  # float32 (D,)
    photo_mean: np.ndarray  # float32 (D,)
    projection: np.ndarray  # float32 (D, K), orthonormal columns
    losses: tuple[float, ...]  # ITQ loss ||B - V R||^2 / n, before the first and after each step


@dataclass(frozen=True)
class FitProgress:
    stage: str  # "sketches" or "photos"
    done: int
    total: int


def pca_basis(centred: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` principal directions (D, k) of already centred rows, each column's sign
    fixed so that its largest-magnitude entry is positive (SVD signs are arbitrary)."""
    _, _, vt = np.linalg.svd(np.asarray(centred, np.float64), full_matrices=False)
    basis = vt[:k].T
    pivots = basis[np.argmax(np.abs(basis), axis=0), np.arange(k)]
    return basis * np.where(pivots < 0, -1.0, 1.0)


def itq_rotation(
    v: np.ndarray, iterations: int = ITQ_ITERATIONS, seed: int = ITQ_SEED
) -> tuple[np.ndarray, tuple[float, ...]]:
    """ITQ on (n, K) rows ``v``: the orthogonal (K, K) R and the loss ||sign(V R) - V R||^2 / n
    at the start and after each of ``iterations`` steps (it never increases)."""
    v = np.asarray(v, np.float64)
    k = v.shape[1]
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((k, k)))

    def loss(r: np.ndarray) -> float:
        projected = v @ r
        return float(np.square(np.where(projected >= 0, 1.0, -1.0) - projected).sum() / len(v))

    losses = [loss(rotation)]
    for _ in range(iterations):
        b = np.where(v @ rotation >= 0, 1.0, -1.0)
        s, _, ohat_t = np.linalg.svd(b.T @ v)  # B^T V = S Omega Ohat^T  ->  R = Ohat S^T
        rotation = ohat_t.T @ s.T
        losses.append(loss(rotation))
    return rotation, tuple(losses)


def fit_codes(
    sketch_outputs: np.ndarray,
    photo_outputs: np.ndarray,
    bits: int,
    *,
    code_fit: str = "photos",
    iterations: int = ITQ_ITERATIONS,
    seed: int = ITQ_SEED,
) -> CodeFit:
    """Fit the means and the PCA + ITQ projection from raw outputs (n, D) of each domain."""
    if code_fit not in CODE_FIT:
        raise ConfigError(f"Unknown code_fit '{code_fit}'; choose one of {CODE_FIT}.")
    s = np.asarray(sketch_outputs, np.float64)
    p = np.asarray(photo_outputs, np.float64)
    if not (len(s) and len(p)):
        raise ConfigError(
            f"Fitting codes needs sketches and photos; got {len(s)} sketches, {len(p)} photos."
        )
    if s.ndim != 2 or p.ndim != 2 or s.shape[1] != p.shape[1]:
        raise ConfigError(
            f"Sketch and photo outputs must be (n, D) of one width; got {s.shape}, {p.shape}."
        )
    if not (np.isfinite(s).all() and np.isfinite(p).all()):
        raise ConfigError("The model's outputs are not all finite; its codes cannot be fitted.")
    dim = p.shape[1]
    s_mean, p_mean = s.mean(axis=0), p.mean(axis=0)
    both = np.concatenate([s - s_mean, p - p_mean])
    centred = {"photos": p - p_mean, "both": both, "sketches": s - s_mean}[code_fit]
    if bits > dim or min(len(centred), len(both)) < bits:
        raise ConfigError(
            f"Fitting {bits}-bit codes needs outputs at least {bits} wide and at least {bits} "
            f"rows to fit on; got {len(s)} sketches and {len(p)} photos of width {dim}."
        )
    basis = pca_basis(centred, bits)
    rotated = both if code_fit == "sketches" else centred  # "sketches": ITQ on both domains
    rotation, losses = itq_rotation(rotated @ basis, iterations, seed)
    return CodeFit(
        sketch_mean=s_mean.astype(np.float32),
        photo_mean=p_mean.astype(np.float32),
        projection=(basis @ rotation).astype(np.float32),
        losses=losses,
    )


class FittedCodes(nn.Module):
    """The fitted stage of a model with ``codes="fitted"``: (B, D) raw outputs to (B, K)."""

    def __init__(self, dim: int, bits: int) -> None:
        super().__init__()
        self.dim, self.bits = dim, bits
        self.register_buffer("sketch_mean", torch.zeros(dim))
        self.register_buffer("photo_mean", torch.zeros(dim))
        self.register_buffer("projection", torch.zeros(dim, bits))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def load(self, fit: CodeFit) -> None:
        """Take the values of a fit (float32, exactly as fitted)."""
        if fit.projection.shape != (self.dim, self.bits):
            raise ConfigError(
                f"A fit of shape {fit.projection.shape} does not fit this model's "
                f"({self.dim}, {self.bits}) projection."
            )
        with torch.no_grad():
            for name in ("sketch_mean", "photo_mean", "projection"):
                getattr(self, name).copy_(torch.from_numpy(np.asarray(getattr(fit, name))))
            self.fitted.fill_(1)

    def check(self) -> None:
        if not self.is_fitted:
            raise CodesNotFittedError(
                "This model makes fitted codes, but its projection has not been fitted yet (a "
                "checkpoint saved before its training run finished?). Fit it on the training "
                "data: sketch-search fit-codes CHECKPOINT --data DATASET."
            )

    def forward(self, outputs: torch.Tensor, domain: str) -> torch.Tensor:
        self.check()
        if domain not in DOMAINS:
            raise ConfigError(f"Unknown domain '{domain}'; choose one of {DOMAINS}.")
        mean = self.sketch_mean if domain == "sketch" else self.photo_mean
        return (outputs.float() - mean) @ self.projection


def evenly_spaced(n: int, limit: int | None) -> np.ndarray:
    """Indices of at most ``limit`` of ``n`` items, evenly spaced (all of them for None)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(np.int64)


def fit_model_codes(
    model,
    sketches: np.ndarray,
    photos: np.ndarray,
    *,
    edges: np.ndarray | None = None,
    limit: int | None = None,
    batch_size: int = FIT_BATCH,
    cancel: threading.Event | None = None,
) -> Generator[FitProgress, None, CodeFit]:
    """Fit a ``codes="fitted"`` model's binarisation on uint8 (n, S, S) sketches and
    (m, P, P, 3) photos (training data only: whatever is fitted on shapes every code), at most
    ``limit`` of each, evenly spaced. Raw outputs in eval mode, ``edges`` as for
    ``embed_photos``. Yields progress, stores the fit in the model and returns it."""
    if model.fitted_codes is None:
        raise ConfigError(
            f'{model.method} model makes sign codes; its config has no codes="fitted".'
        )
    cancel = cancel or threading.Event()
    s_idx, p_idx = evenly_spaced(len(sketches), limit), evenly_spaced(len(photos), limit)

    def sketch_rows(ix: np.ndarray) -> np.ndarray:
        return model.embed_sketches(sketches[ix], raw=True)

    def photo_rows(ix: np.ndarray) -> np.ndarray:
        return model.embed_photos(photos[ix], None if edges is None else edges[ix], raw=True)

    s_raw = yield from _raw_outputs(sketch_rows, s_idx, "sketches", batch_size, cancel)
    p_raw = yield from _raw_outputs(photo_rows, p_idx, "photos", batch_size, cancel)
    fit = fit_codes(s_raw, p_raw, model.bits, code_fit=model.config.code_fit)
    model.fitted_codes.load(fit)
    log.info(
        "Codes fitted on %d sketches and %d photos (ITQ on %s; loss %.4f -> %.4f)",
        len(s_idx),
        len(p_idx),
        model.config.code_fit,
        fit.losses[0],
        fit.losses[-1],
    )
    return fit


def _raw_outputs(rows, idx: np.ndarray, stage: str, batch_size: int, cancel: threading.Event):
    """``rows`` over ``idx`` in batches, yielding FitProgress; returns the rows concatenated."""
    parts = []
    for i in range(0, len(idx), batch_size):
        if cancel.is_set():
            raise Cancelled("Fitting the codes was cancelled.")
        parts.append(rows(idx[i : i + batch_size]))
        yield FitProgress(stage, min(i + batch_size, len(idx)), len(idx))
    return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)


def with_fitted_codes(model, code_fit: str | None = None, **changes):
    """A copy of ``model`` (same weights, device and mode) whose config asks for fitted codes
    (``code_fit``: None keeps the model's; ``changes``: other config fields, e.g. DSSA's
    ``codes_from``), not fitted yet: what ``fit_model_codes`` takes. The model's other fitted
    parts (``full_precision_prefixes``, e.g. DSSA's HOG term) are left to be fitted again."""
    config = dataclasses.replace(
        model.config, codes="fitted", code_fit=code_fit or model.config.code_fit, **changes
    )
    fitted = type(model)(config)
    prefixes = tuple(type(model).full_precision_prefixes)  # every fitted part, refitted anew
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    missing, unexpected = fitted.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(prefixes) for k in missing):
        raise ConfigError(f"{model.method} could not be copied with fitted codes.")
    return fitted.to(model.device).train(model.training)
