"""Discrete binary code learning by semantic factorisation: the closed-form D and B steps.

Shared by the DSH (Liu et al., "Deep Sketch Hashing: Fast Free-hand Sketch-Based Image
Retrieval", CVPR 2017, arXiv 1703.05605) and GDH training procedures. Pure functions on tensors.

Notation: ``n`` samples, ``K`` bits, ``C`` classes. ``B`` (n, K) binary codes in {-1, +1};
``Y`` (n, C) the one-hot label matrix of ``labels`` (n,) int64; ``D`` (C, K) a projection from
labels to codes (row c is the real-valued "code" of class c); ``F`` (n, K) real network outputs
(e.g. tanh of the hash layer); ``reg`` >= 0 and ``mu`` >= 0 weights.

Objective (``factorisation_objective``)::

    J(B, D) = ||B - Y D||_F^2 + reg ||D||_F^2 + mu ||B - F||_F^2

minimised alternately, each step exactly:

- D step (``d_step``): with B fixed, J is a ridge regression of B on Y, so
  D = (Y^T Y + reg I)^-1 Y^T B. Y^T Y = diag(class counts), so row c of D is the sum of the codes
  of class c divided by (count_c + reg): no matrix inverse. With reg = 0 every class must occur
  (else the system is singular; ``ConfigError``).
- B step (``b_step``): with D fixed, J separates over the entries of B. For b in {-1, +1},
  (b - a)^2 + mu (b - f)^2 = const - 2 b (a + mu f) since b^2 = 1, so the minimiser is
  B = sign(Y D + mu F), and a zero (a tie) is mapped to +1 so every entry stays in {-1, +1}.

Difference from the paper: DSH factorises the word vectors of the class names, ||phi(Y) - D B||
with phi a word embedding, which makes the codes of semantically close classes close. No word
vectors can be had here (no network access, no embedding files in ../shared/data), so, as the
issue says, D is a projection from the one-hot labels to the codes: the "semantic space" is the
class identity itself, and classes are pulled to their own centre code but not towards related
classes. The B step's coupling to the network outputs (``mu ||B - F||^2``) is the paper's
quantisation term seen from the B side: the network is then trained to regress B.

Class embeddings (``embedding``, the paper's semantic side made visual): instead of one-hot
rows, each class c has a row E_c of a (C, d) matrix, and the codes factorise through it,
||B - E_Y W||^2 + reg ||W||^2 with W (d, K): the D step is then the ridge regression
W = (E_Y^T E_Y + reg I)^-1 E_Y^T B, and the B step is unchanged with Y D = E_Y W. With E = I
this is the one-hot factorisation above. ``class_embedding`` builds E from the frozen photo
features of the training photos (each class's mean, centred, reduced by PCA and normalised), the
stand-in for word vectors: classes that look alike get nearby rows, so a linear W gives them
nearby codes, and a class never trained on lands near the classes it resembles.
"""

from __future__ import annotations

import torch

from engine.errors import ConfigError


def one_hot(labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Float (n, C) one-hot matrix Y of int labels (n,); C = max label + 1 unless given."""
    labels = _check_labels(labels)
    c = _num_classes(labels, num_classes)
    y = torch.zeros(labels.shape[0], c, dtype=torch.float32, device=labels.device)
    y[torch.arange(labels.shape[0], device=labels.device), labels] = 1.0
    return y


def d_step(
    codes: torch.Tensor,
    labels: torch.Tensor,
    reg: float,
    *,
    num_classes: int | None = None,
    embedding: torch.Tensor | None = None,
) -> torch.Tensor:
    """argmin_D ||B - Y D||_F^2 + reg ||D||_F^2 = (Y^T Y + reg I)^-1 Y^T B, shape (C, K); with
    an ``embedding`` E (C, d), argmin_W ||B - E_Y W||^2 + reg ||W||^2, shape (d, K)."""
    if reg < 0:
        raise ConfigError(f"d_step: reg must be >= 0, got {reg}.")
    labels = _check_labels(labels)
    codes = _check_matrix(codes, "codes", labels.shape[0])
    c = _num_classes(labels, num_classes if embedding is None else len(embedding))
    b = codes.to(torch.float64)
    sums = torch.zeros(c, b.shape[1], dtype=torch.float64, device=b.device)
    sums.index_add_(0, labels, b)  # Y^T B
    counts = torch.bincount(labels, minlength=c).to(torch.float64)  # diag(Y^T Y)
    if embedding is not None:
        e = _check_embedding(embedding, c).to(torch.float64)
        gram = e.T @ (counts[:, None] * e) + reg * torch.eye(e.shape[1], dtype=torch.float64)
        try:
            return torch.linalg.solve(gram, e.T @ sums).to(codes.dtype)  # E_Y^T B = E^T Y^T B
        except RuntimeError as exc:  # singular: reg 0 and too few classes for the embedding
            raise ConfigError(f"d_step: the embedding's system is singular ({exc}).") from exc
    denom = counts + reg
    if bool((denom <= 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()[:10]
        raise ConfigError(
            f"d_step: classes {missing} have no sample and reg is 0; pass reg > 0 or give "
            "every class at least one sample."
        )
    return (sums / denom[:, None]).to(codes.dtype)


def b_step(
    d: torch.Tensor,
    labels: torch.Tensor,
    features: torch.Tensor | None,
    mu: float,
    *,
    embedding: torch.Tensor | None = None,
) -> torch.Tensor:
    """argmin over B in {-1,+1}^(n,K) of ||B - Y D||^2 + mu ||B - F||^2 = sign(Y D + mu F);
    with an ``embedding`` E, ``d`` is W and Y D is E_Y W.

    ``features`` may be None (then mu is ignored: B = sign(Y D)); a zero maps to +1.
    """
    if mu < 0:
        raise ConfigError(f"b_step: mu must be >= 0, got {mu}.")
    labels = _check_labels(labels)
    d = class_targets(d, embedding)
    if d.ndim != 2:
        raise ConfigError(
            f"b_step: D must be a (classes, bits) matrix, got shape {tuple(d.shape)}."
        )
    if labels.numel() and int(labels.max()) >= d.shape[0]:
        raise ConfigError(
            f"b_step: label {int(labels.max())} is out of range for D with {d.shape[0]} classes."
        )
    target = d[labels]  # Y D
    if features is not None and mu > 0:
        features = _check_matrix(features, "features", labels.shape[0])
        if features.shape[1] != d.shape[1]:
            raise ConfigError(
                f"b_step: features have {features.shape[1]} columns but D has {d.shape[1]} bits."
            )
        target = target + mu * features.to(target.dtype)
    return torch.where(target >= 0, 1.0, -1.0).to(d.dtype)


def factorisation_objective(
    codes: torch.Tensor,
    labels: torch.Tensor,
    d: torch.Tensor,
    reg: float,
    features: torch.Tensor | None = None,
    mu: float = 0.0,
    embedding: torch.Tensor | None = None,
) -> torch.Tensor:
    """J(B, D) = ||B - Y D||_F^2 + reg ||D||_F^2 + mu ||B - F||_F^2 (scalar tensor); with an
    ``embedding``, ``d`` is W and Y D is E_Y W."""
    labels = _check_labels(labels)
    targets = class_targets(d, embedding)
    value = (codes - targets[labels]).pow(2).sum() + reg * d.pow(2).sum()
    if features is not None and mu > 0:
        value = value + mu * (codes - features).pow(2).sum()
    return value


def alternate(
    labels: torch.Tensor,
    features: torch.Tensor,
    reg: float,
    mu: float,
    *,
    codes: torch.Tensor | None = None,
    num_classes: int | None = None,
    iterations: int = 3,
    embedding: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A few D/B alternations from ``codes`` (or sign(F)); returns (B, D), D being W with an
    ``embedding``. J never increases."""
    b = codes if codes is not None else torch.where(features >= 0, 1.0, -1.0)
    d = d_step(b, labels, reg, num_classes=num_classes, embedding=embedding)
    for _ in range(max(1, iterations)):
        b = b_step(d, labels, features, mu, embedding=embedding)
        d = d_step(b, labels, reg, num_classes=num_classes, embedding=embedding)
    return b, d


def class_targets(d: torch.Tensor, embedding: torch.Tensor | None) -> torch.Tensor:
    """The (C, K) real-valued code of each class: D itself, or E W with an embedding."""
    if embedding is None:
        return d
    if d.ndim != 2 or embedding.ndim != 2 or embedding.shape[1] != d.shape[0]:
        raise ConfigError(
            f"The class embedding {tuple(embedding.shape)} does not fit W {tuple(d.shape)}."
        )
    return embedding.to(d.dtype) @ d


def class_embedding(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, dim: int
) -> torch.Tensor:
    """(C, dim + 1) class embedding from sample features (n, F) (see the module docstring): each
    class's mean feature, centred over the classes, projected on its ``dim`` main directions
    (fewer if the classes span fewer), rows L2-normalised, and a constant 1 column so W has a
    bias. Every class must have a sample."""
    labels = _check_labels(labels)
    if dim < 1:
        raise ConfigError(f"class_embedding: dim must be >= 1, got {dim}.")
    x = _check_matrix(features, "features", labels.shape[0]).to(torch.float64)
    sums = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, device=x.device)
    sums.index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()[:10]
        raise ConfigError(f"class_embedding: classes {missing} have no sample.")
    means = sums / counts[:, None]
    centred = means - means.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    rows = centred @ v[: min(dim, len(v))].T
    rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.cat([rows, torch.ones(num_classes, 1, dtype=rows.dtype)], 1).float()


def embedding_codes(embedding: torch.Tensor, bits: int, seed: int) -> torch.Tensor:
    """(C, bits) +-1 starting codes: signs of a seeded Gaussian projection of the embedding's
    rows without its constant column (random-hyperplane hashing: classes with nearby rows share
    most bits)."""
    g = torch.Generator().manual_seed(seed)
    rows = embedding[:, :-1].double().cpu()
    projected = rows @ torch.randn(rows.shape[1], bits, generator=g, dtype=torch.float64)
    return torch.where(projected >= 0, 1.0, -1.0)


def _check_embedding(embedding: torch.Tensor, num_classes: int) -> torch.Tensor:
    if embedding.ndim != 2 or embedding.shape[0] != num_classes:
        raise ConfigError(
            f"The class embedding must have one row per class ({num_classes}), got shape "
            f"{tuple(embedding.shape)}."
        )
    return embedding


def _check_labels(labels: torch.Tensor) -> torch.Tensor:
    if labels.ndim != 1:
        raise ConfigError(f"labels must be a 1-D tensor of class ids, got {tuple(labels.shape)}.")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ConfigError(f"labels must be integer class ids, got dtype {labels.dtype}.")
    labels = labels.to(torch.int64)
    if labels.numel() and int(labels.min()) < 0:
        raise ConfigError("labels must be >= 0.")
    return labels


def _check_matrix(x: torch.Tensor, name: str, n: int) -> torch.Tensor:
    if x.ndim != 2 or x.shape[0] != n:
        raise ConfigError(f"{name} must be an ({n}, bits) matrix, got shape {tuple(x.shape)}.")
    return x


def _num_classes(labels: torch.Tensor, num_classes: int | None) -> int:
    inferred = int(labels.max()) + 1 if labels.numel() else 0
    if num_classes is None:
        return inferred
    if num_classes < inferred:
        raise ConfigError(f"num_classes={num_classes} but labels go up to {inferred - 1}.")
    return num_classes
