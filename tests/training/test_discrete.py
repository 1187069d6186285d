"""The closed-form D and B steps of training.discrete against brute force."""

from __future__ import annotations

import itertools

import pytest
import torch

from engine.errors import ConfigError
from training import discrete


def _random_problem(seed: int, n: int = 12, k: int = 4, c: int = 3):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n,), generator=g)
    labels[:c] = torch.arange(c)  # every class occurs
    codes = torch.where(torch.rand(n, k, generator=g) < 0.5, -1.0, 1.0)
    features = torch.rand(n, k, generator=g) * 2 - 1
    return codes, labels, features


@pytest.mark.parametrize("reg", [0.0, 0.5, 3.0])
def test_d_step_matches_lstsq_on_stacked_ridge_system(reg):
    codes, labels, _ = _random_problem(0)
    c = 3
    d = discrete.d_step(codes, labels, reg, num_classes=c)
    y = discrete.one_hot(labels, c).double()
    # ridge as ordinary least squares: [Y; sqrt(reg) I] D = [B; 0]
    a = torch.cat([y, (reg**0.5) * torch.eye(c, dtype=torch.float64)])
    rhs = torch.cat([codes.double(), torch.zeros(c, codes.shape[1], dtype=torch.float64)])
    expected = torch.linalg.lstsq(a, rhs).solution
    assert d.shape == (c, codes.shape[1])
    torch.testing.assert_close(d.double(), expected, atol=1e-6, rtol=1e-6)


def test_d_step_gradient_of_objective_is_zero_at_result():
    codes, labels, _ = _random_problem(1, n=20, k=6, c=4)
    codes = codes.double()
    d = discrete.d_step(codes, labels, 0.7, num_classes=5).requires_grad_(True)
    value = discrete.factorisation_objective(codes, labels, d, 0.7)
    (grad,) = torch.autograd.grad(value, d)
    assert grad.abs().max().item() < 1e-9
    # and a perturbation increases the objective (it is a minimum, not just stationary)
    bumped = discrete.factorisation_objective(codes, labels, d.detach() + 0.05, 0.7)
    assert bumped.item() > value.item()


def test_d_step_class_without_samples_needs_reg():
    codes, labels, _ = _random_problem(2)
    d = discrete.d_step(codes, labels, 1.0, num_classes=5)
    assert torch.all(d[3:] == 0)  # unseen classes shrink to zero
    with pytest.raises(ConfigError, match="reg > 0"):
        discrete.d_step(codes, labels, 0.0, num_classes=5)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mu", [0.0, 0.3, 2.0])
def test_b_step_matches_enumeration_of_all_sign_vectors(seed, mu):
    k = 4
    _codes, labels, features = _random_problem(seed, n=6, k=k, c=3)
    g = torch.Generator().manual_seed(100 + seed)
    d = torch.randn(3, k, generator=g, dtype=torch.float64)
    features = features.double()
    b = discrete.b_step(d, labels, features, mu)
    assert set(b.unique().tolist()) <= {-1.0, 1.0}
    candidates = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=k)), dtype=torch.float64)
    for i in range(labels.shape[0]):
        target = d[labels[i]]
        cost = (candidates - target).pow(2).sum(1) + mu * (candidates - features[i]).pow(2).sum(1)
        best = cost.min()
        mine = (b[i] - target).pow(2).sum() + mu * (b[i] - features[i]).pow(2).sum()
        assert mine.item() == pytest.approx(best.item(), abs=1e-12)


def test_b_step_maps_ties_to_plus_one_and_checks_shapes():
    d = torch.zeros(2, 3)
    labels = torch.tensor([0, 1])
    b = discrete.b_step(d, labels, None, 0.0)
    assert torch.equal(b, torch.ones(2, 3))
    with pytest.raises(ConfigError, match="columns"):
        discrete.b_step(d, labels, torch.zeros(2, 4), 1.0)
    with pytest.raises(ConfigError, match="out of range"):
        discrete.b_step(d, torch.tensor([0, 2]), None, 0.0)


def test_alternation_never_increases_the_objective():
    codes, labels, features = _random_problem(5, n=40, k=8, c=5)
    reg, mu = 0.5, 0.8
    b = codes
    d = discrete.d_step(b, labels, reg)
    values = [discrete.factorisation_objective(b, labels, d, reg, features, mu).item()]
    for _ in range(4):
        b = discrete.b_step(d, labels, features, mu)
        values.append(discrete.factorisation_objective(b, labels, d, reg, features, mu).item())
        d = discrete.d_step(b, labels, reg)
        values.append(discrete.factorisation_objective(b, labels, d, reg, features, mu).item())
    assert all(later <= earlier + 1e-9 for earlier, later in itertools.pairwise(values))
    b2, d2 = discrete.alternate(labels, features, reg, mu, codes=codes, iterations=4)
    assert torch.equal(b2, b) and torch.allclose(d2, d)


# ---------------------------------------------------------------- class embeddings
def _embedding(seed: int, c: int, dim: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c, dim, generator=g)


@pytest.mark.parametrize("reg", [0.0, 0.5, 3.0])
def test_embedded_d_step_matches_lstsq_on_stacked_ridge_system(reg):
    codes, labels, _ = _random_problem(2, n=30, k=5, c=6)
    e = _embedding(0, 6, 3)
    w = discrete.d_step(codes, labels, reg, embedding=e)
    ey = e[labels].double()
    a = torch.cat([ey, (reg**0.5) * torch.eye(3, dtype=torch.float64)])
    rhs = torch.cat([codes.double(), torch.zeros(3, 5, dtype=torch.float64)])
    assert w.shape == (3, 5)
    torch.testing.assert_close(
        w.double(), torch.linalg.lstsq(a, rhs).solution, atol=1e-5, rtol=1e-5
    )


def test_identity_embedding_is_the_one_hot_factorisation():
    codes, labels, features = _random_problem(3, n=25, k=6, c=4)
    eye = torch.eye(4)
    torch.testing.assert_close(
        discrete.d_step(codes, labels, 0.7, embedding=eye), discrete.d_step(codes, labels, 0.7)
    )
    b1, d1 = discrete.alternate(labels, features, 0.7, 0.5, codes=codes, embedding=eye)
    b2, d2 = discrete.alternate(labels, features, 0.7, 0.5, codes=codes)
    assert torch.equal(b1, b2)
    torch.testing.assert_close(d1, d2)


def test_embedded_b_step_matches_enumeration_and_alternation_never_increases():
    codes, labels, features = _random_problem(4, n=40, k=4, c=5)
    e = _embedding(1, 5, 2)
    reg, mu = 0.5, 0.8
    w = discrete.d_step(codes, labels, reg, embedding=e)
    b = discrete.b_step(w, labels, features, mu, embedding=e)
    target = e @ w
    for i in range(len(labels)):  # each row: the best of the 16 sign vectors
        best = min(
            itertools.product((-1.0, 1.0), repeat=4),
            key=lambda v: float(
                ((torch.tensor(v) - target[labels[i]]) ** 2).sum()
                + mu * ((torch.tensor(v) - features[i]) ** 2).sum()
            ),
        )
        assert b[i].tolist() == list(best)
    b, values = codes, []
    for _ in range(4):
        w = discrete.d_step(b, labels, reg, embedding=e)
        values.append(discrete.factorisation_objective(b, labels, w, reg, features, mu, e).item())
        b = discrete.b_step(w, labels, features, mu, embedding=e)
        values.append(discrete.factorisation_objective(b, labels, w, reg, features, mu, e).item())
    assert all(later <= earlier + 1e-9 for earlier, later in itertools.pairwise(values))
    with pytest.raises(ConfigError, match="labels go up to"):  # fewer rows than classes
        discrete.d_step(codes, labels, reg, embedding=_embedding(0, 4, 2))
    with pytest.raises(ConfigError, match="does not fit W"):
        discrete.b_step(w[:1], labels, features, mu, embedding=e)


def test_class_embedding_rows_follow_the_class_means():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 10, generator=g) * 5
    labels = torch.arange(4).repeat_interleave(6)
    features = centres[labels] + 0.01 * torch.randn(24, 10, generator=g)
    e = discrete.class_embedding(features, labels, 4, dim=2)
    assert e.shape == (4, 3) and torch.equal(e[:, 2], torch.ones(4))
    torch.testing.assert_close(e[:, :2].norm(dim=1), torch.ones(4))
    # the rows are the centred class means in their two main directions: their cosines agree
    means = centres - centres.mean(0)
    _, _, v = torch.linalg.svd(means)
    proj = torch.nn.functional.normalize(means @ v[:2].T, dim=1)
    torch.testing.assert_close(e[:, :2].abs(), proj.abs(), atol=1e-3, rtol=1e-3)
    with pytest.raises(ConfigError, match="no sample"):
        discrete.class_embedding(features, labels, 5, dim=2)


def test_embedding_codes_are_seeded_signs_shared_by_equal_rows():
    e = torch.cat([_embedding(2, 5, 8), torch.ones(5, 1)], 1)
    e[4] = e[1]
    a, b, c = (discrete.embedding_codes(e, 64, s) for s in (0, 0, 1))
    assert a.shape == (5, 64) and set(a.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[4], a[1])
    # nearer rows share more bits (random-hyperplane hashing), on average over seeds
    near = e.clone()
    near[3, :8] = e[0, :8] + 0.1 * e[2, :8]
    shared = [
        (
            float((codes[0] == codes[3]).float().mean()),
            float((codes[0] == codes[2]).float().mean()),
        )
        for codes in (discrete.embedding_codes(near, 256, s) for s in range(4))
    ]
    assert sum(x for x, _ in shared) > sum(y for _, y in shared)
