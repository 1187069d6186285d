"""Loss terms shared by the training procedures: small pure functions on tensors.

Inputs named ``u`` and ``v`` are relaxed codes (tanh of the model output, in [-1, 1]) of two
domains, e.g. sketches and photos; ``same`` is a boolean (n_u, n_v) matrix of "same class".

- ``pairwise_likelihood``: the pairwise likelihood of DPSH (Li et al., IJCAI 2016), cross-domain:
  theta_ij = <u_i, v_j> / 2; loss = mean_ij [ log(1 + exp(theta_ij)) - s_ij theta_ij ]. It pulls the
  codes of same-class pairs together and pushes others apart, in inner product, which for
  +-1 codes is K - 2 * Hamming distance.
- ``quantization``: mean (|u| - 1)^2, which drives relaxed codes to +-1 so the sign loses little.
- ``bit_balance``: mean over bits of (batch mean of u)^2, so each bit splits the data about evenly.
- ``triplet``: mean max(0, m + d(a, p) - d(a, n)) with squared Euclidean d (fine-grained ranking).
- ``holef_triplet``: the same with DSSA's learnt HOLEF distance, plus its regulariser on W.
- ``holef_triplet_in_batch``: the HOLEF triplet loss with every other photo of the batch as a
  negative (n x m hinges from one forward pass instead of n).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.models.dssa import holef_distance, holef_pairwise


def pairwise_likelihood(u: torch.Tensor, v: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    theta = 0.5 * u @ v.T
    return (F.softplus(theta) - same.to(theta.dtype) * theta).mean()


def quantization(u: torch.Tensor) -> torch.Tensor:
    return (u.abs() - 1.0).pow(2).mean()


def bit_balance(u: torch.Tensor) -> torch.Tensor:
    return u.mean(dim=0).pow(2).mean()


def triplet(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float
) -> torch.Tensor:
    d_pos = (anchor - positive).pow(2).sum(dim=1)
    d_neg = (anchor - negative).pow(2).sum(dim=1)
    return F.relu(margin + d_pos - d_neg).mean()


def same_class(labels_u: torch.Tensor, labels_v: torch.Tensor) -> torch.Tensor:
    """Boolean (n_u, n_v): labels_u[i] == labels_v[j]."""
    return labels_u[:, None] == labels_v[None, :]


def holef_triplet(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    weight: torch.Tensor | None,
    margin: float,
    lam: float = 5e-4,
) -> torch.Tensor:
    """DSSA's HOLEF triplet loss (Song et al., ICCV 2017, eqs. 6-8).

    mean max(0, m + D_H(a, p) - D_H(a, n)) + lam * (||W - I||_1 + ||W - I||_F), with
    D_H(x, y) = sum_ij W_ij (x_i - y_j)^2 computed by expanding the square
    (``engine.models.dssa.holef_distance``). ``weight`` None: the Euclidean ablation (no W, no
    regulariser).
    """
    d_pos = holef_distance(anchor, positive, weight)
    d_neg = holef_distance(anchor, negative, weight)
    loss = F.relu(margin + d_pos - d_neg).mean()
    if weight is None:
        return loss
    deviation = weight - torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
    return loss + lam * (deviation.abs().sum() + torch.linalg.matrix_norm(deviation))


def holef_triplet_in_batch(
    anchor: torch.Tensor,
    candidates: torch.Tensor,
    positive: torch.Tensor,
    same: torch.Tensor,
    weight: torch.Tensor | None,
    margin: float,
    lam: float = 5e-4,
    active: bool = False,
) -> torch.Tensor:
    """The HOLEF triplet loss with every other photo of the batch as a negative.

    ``candidates``: (m, D) photo features; ``positive``: (n,) index of each anchor's positive
    among them; ``same``: (n, m) True where a candidate is the anchor's positive photo (never
    a negative). Mean of max(0, m + D_H(a_i, c_pos(i)) - D_H(a_i, c_j)) over every anchor i and
    negative j, plus the W regulariser as ``holef_triplet``. Pairwise distances by
    ``engine.models.dssa.holef_pairwise`` (the expanded square). ``active``: the mean over the
    violated (non-zero) hinges only, so the many easy negatives of a batch do not dilute the
    few that still rank above the positive ("batch all" averaging, Hermans et al. 2017).
    """
    dist = holef_pairwise(anchor, candidates, weight)
    d_pos = dist.gather(1, positive[:, None])
    negatives = ~same
    hinge = F.relu(margin + d_pos - dist) * negatives
    count = (hinge > 0).sum() if active else negatives.sum()
    loss = hinge.sum() / count.clamp(min=1)
    if weight is None:
        return loss
    deviation = weight - torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
    return loss + lam * (deviation.abs().sum() + torch.linalg.matrix_norm(deviation))
