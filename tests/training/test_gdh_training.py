"""GDH training: each loss term against a naive loop, the discrete D/B steps between epochs against
brute force, the ablation switches and the hashing net's learning-rate drop, exact resume, the
fine-grained setting, and a short real run on a few Sketchy classes that must beat random."""

import itertools
import json

import numpy as np
import pytest
import torch

from engine.models import create, load_checkpoint, model_id
from training import EvalConfig, TrainConfig, evaluate, gdh_nets, train
from training.arrays import prepare_arrays
from training.data import load_dataset
from training.discrete import alternate
from training.methods.gdh import GDHProcedure
from training.procedure import StepContext
from training.progress import drain

from .conftest import FEW_CLASSES

TINY = {"image_size": 64, "pretrained": False, "gen_channels": 4, "gi_blocks": 1, "gs_blocks": 1}


# ---------------------------------------------------------------------- loss terms
def test_loss_terms_match_naive_loops():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(2, 1, 3, 3, generator=g), torch.randn(2, 1, 3, 3, generator=g)
    r, f = real.flatten().tolist(), fake.flatten().tolist()
    naive_d = 0.5 * (sum((x - 1) ** 2 for x in r) / len(r) + sum(x**2 for x in f) / len(f))
    assert float(gdh_nets.lsgan_discriminator(real, fake)) == pytest.approx(naive_d)
    assert float(gdh_nets.lsgan_generator(fake)) == pytest.approx(
        sum((x - 1) ** 2 for x in f) / len(f)
    )
    x, y = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    pairs = list(zip(x.flatten().tolist(), y.flatten().tolist(), strict=True))
    assert float(gdh_nets.cycle(x, y)) == pytest.approx(sum(abs(a - b) for a, b in pairs) / 96)

    u = torch.tanh(torch.randn(3, 4, generator=g))
    v = torch.tanh(torch.randn(3, 4, generator=g))
    b = torch.where(torch.randn(3, 4, generator=g) >= 0, 1.0, -1.0)
    cells = [(i, k) for i in range(3) for k in range(4)]
    sem = sum((float(b[i, k]) - float(u[i, k])) ** 2 for i, k in cells) / 12
    quant = (
        sum(((1.0 if float(u[i, k]) >= 0 else -1.0) - float(u[i, k])) ** 2 for i, k in cells) / 12
    )
    unify = sum((float(u[i, k]) - float(v[i, k])) ** 2 for i, k in cells) / 12
    assert float(gdh_nets.semantic_regression(u, b)) == pytest.approx(sem)
    assert float(gdh_nets.quantisation(u)) == pytest.approx(quant)
    assert float(gdh_nets.unification(u, v)) == pytest.approx(unify)


def test_discriminators_score_patches_and_mask_upsampling_stays_binary():
    d = gdh_nets.Discriminator(3, 8)
    assert d(torch.rand(2, 3, 64, 64)).shape == (2, 1, 6, 6)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    up = gdh_nets.upsample_mask(mask, torch.zeros(1, 3, 4, 4))
    assert up.shape == (1, 1, 4, 4) and torch.equal(up[0, 0, :2, :2], torch.ones(2, 2))
    assert torch.equal(up[0, 0, :2, 2:], torch.zeros(2, 2))
    assert torch.equal(
        gdh_nets.upsample_mask(None, torch.zeros(2, 3, 4, 4)), torch.ones(2, 1, 4, 4)
    )


# ---------------------------------------------------------------------- the procedure
def _procedure(folder, **options):
    torch.manual_seed(0)
    model = create("gdh", bits=32, **TINY)
    data = drain(prepare_arrays(load_dataset(folder), 64, 64))
    config = TrainConfig(
        method="gdh",
        model={"bits": 32, **TINY},
        options={"disc_channels": 8, **options},
        epochs=1,
        batch_size=4,
        per_class=2,
        split=None,
        lr=1e-3,
    )
    proc = GDHProcedure(model, data, config, torch.device("cpu"))
    ctx = StepContext(torch.device("cpu"), proc.build_optimizers(), 5.0, False)
    return proc, ctx


def test_discrete_steps_between_epochs_match_brute_force(category_folder):
    proc, _ = _procedure(category_folder, mu=0.7, reg=0.5)
    g = torch.Generator().manual_seed(3)
    proc.feat_p = torch.tanh(torch.randn(proc.feat_p.shape, generator=g))
    proc.feat_s = torch.tanh(torch.randn(proc.feat_s.shape, generator=g))
    old = torch.cat([proc.b_p, proc.b_s])
    labels = np.concatenate([proc.data.photo_labels, proc.data.sketch_labels]).tolist()
    metrics = proc.on_epoch_end(0)
    # D step (eq. 9): ridge on one-hot labels = class sums over (count + reg)
    for c in range(2):
        rows = [i for i, y in enumerate(labels) if y == c]
        expected = old[rows].sum(0) / (len(rows) + 0.5)
        torch.testing.assert_close(proc.d[c], expected)
    # B steps (eqs. 12, 13): each entry the better of -1, +1 (ties to +1)
    for codes, feats, ys in (
        (proc.b_p, proc.feat_p, proc.data.photo_labels),
        (proc.b_s, proc.feat_s, proc.data.sketch_labels),
    ):
        for i, k in itertools.product(range(codes.shape[0]), range(codes.shape[1])):
            a, f = float(proc.d[ys[i], k]), float(feats[i, k])
            cost = {b: (b - a) ** 2 + 0.7 * (b - f) ** 2 for b in (1.0, -1.0)}
            assert float(codes[i, k]) == (1.0 if cost[1.0] <= cost[-1.0] else -1.0)
    changed = (torch.cat([proc.b_p, proc.b_s]) != old).float().mean()
    assert metrics["codes_changed"] == pytest.approx(float(changed))


def test_codes_start_from_the_untrained_model_outputs(category_folder):
    proc, _ = _procedure(category_folder, mu=0.5, reg=2.0)
    assert not proc.codes_ready
    proc.on_epoch_start(0)
    m, data = proc.model, proc.data
    f_p = torch.tanh(torch.from_numpy(m.embed_photos(data.photos)))
    f_s = torch.tanh(torch.from_numpy(m.embed_sketches(data.sketches)))
    labels = torch.from_numpy(np.concatenate([data.photo_labels, data.sketch_labels]))
    features = torch.cat([f_p, f_s])
    codes, d = alternate(labels, features - features.mean(0), 2.0, 0.5, num_classes=2)
    torch.testing.assert_close(proc.feat_p, f_p)
    assert torch.equal(torch.cat([proc.b_p, proc.b_s]), codes) and torch.equal(proc.d, d)
    assert proc.extra_state()["codes_ready"] is True
    before = proc.b_p.clone()
    proc.on_epoch_start(1)  # only once
    assert torch.equal(proc.b_p, before)


def test_random_initial_codes_give_each_class_its_own_code(category_folder):
    proc, _ = _procedure(category_folder, init_codes="random")
    assert proc.codes_ready
    ys = proc.data.photo_labels
    for c in range(2):
        rows = proc.b_p[ys == c]
        assert torch.equal(rows, rows[:1].expand_as(rows))
    assert not torch.equal(proc.b_p[ys == 0][0], proc.b_p[ys == 1][0])


def test_step_trains_every_part_and_records_the_outputs(category_folder):
    proc, ctx = _procedure(category_folder)
    batch = proc.epoch_batches(0, torch.Generator().manual_seed(0))[0]
    before = {n: p.detach().clone() for n, p in proc.d_i.named_parameters()}
    g_before = proc.model.g_i.encoder[0].weight.detach().clone()
    proc.train_mode()
    terms = proc.step(batch, ctx)
    assert {"gan", "cycle", "sem", "quant", "unify", "disc", "total"} <= set(terms)
    o = proc.options
    expected = (
        terms["gan"] + 10 * terms["cycle"] + terms["sem"]
        + o["alpha"] * terms["quant"] + o["beta"] * terms["unify"]
    )  # fmt: skip
    assert terms["total"] == pytest.approx(expected, rel=1e-5)
    assert any(not torch.equal(before[n], p) for n, p in proc.d_i.named_parameters())
    assert not torch.equal(g_before, proc.model.g_i.encoder[0].weight)
    s_idx, p_idx = batch
    assert proc.feat_s[s_idx].abs().sum() > 0 and proc.feat_p[p_idx].abs().sum() > 0


def test_ablation_switches(category_folder):
    proc, ctx = _procedure(
        category_folder, use_gan=False, use_quantisation=False, use_unification=False
    )
    batch = proc.epoch_batches(0, torch.Generator().manual_seed(0))[0]
    before = {n: p.detach().clone() for n, p in proc.d_s.named_parameters()}
    proc.train_mode()
    terms = proc.step(batch, ctx)
    assert "gan" not in terms and "disc" not in terms
    assert terms["total"] == pytest.approx(10 * terms["cycle"] + terms["sem"], rel=1e-5)
    assert all(torch.equal(before[n], p) for n, p in proc.d_s.named_parameters())


@pytest.mark.parametrize(("dropped", "scale"), [(False, 1.0), (True, 1.0), (False, 3.0)])
def test_hashing_net_learning_rate_drops_late(category_folder, dropped, scale):
    """Adam's first step moves each weight by about lr: x0.1 once the drop epoch is reached,
    x ``hash_lr_scale`` throughout; the generators keep lr."""
    proc, ctx = _procedure(
        category_folder, hash_drop_at=0.01 if dropped else 1.0, hash_lr_scale=scale
    )
    assert proc.hash_lr_dropped() == dropped
    batch = proc.epoch_batches(0, torch.Generator().manual_seed(0))[0]
    w = proc.model.hash_layer.weight.detach().clone()
    proc.train_mode()
    proc.step(batch, ctx)
    moved = float((proc.model.hash_layer.weight.detach() - w).abs().max())
    lr = 1e-3 * scale * (0.1 if dropped else 1.0)
    assert 0.5 * lr < moved < 1.5 * lr
    assert ctx.optimizers["main"].param_groups[1]["lr"] == pytest.approx(lr)
    assert ctx.optimizers["main"].param_groups[0]["lr"] == pytest.approx(1e-3)


def test_resume_continues_exactly_with_codes(category_folder, tmp_path):
    torch.set_num_threads(1)
    config = TrainConfig(
        method="gdh",
        model={"bits": 32, **TINY},
        options={"disc_channels": 8},
        epochs=2,
        batch_size=4,
        per_class=2,
        split=None,
        lr=1e-3,
        schedule="constant",  # a cosine schedule would depend on the first run's epochs
    )
    straight = drain(train(config, category_folder, tmp_path / "a.safetensors"))
    drain(train(config.replace(epochs=1), category_folder, tmp_path / "b.safetensors"))
    resumed = drain(
        train(
            config, category_folder, tmp_path / "b.safetensors", resume=tmp_path / "b.safetensors"
        )
    )
    assert resumed.model_id == straight.model_id
    log = [json.loads(line) for line in (tmp_path / "a.log.jsonl").read_text().splitlines()]
    assert [e["metrics"]["codes_changed"] >= 0 for e in log if e["event"] == "epoch"] == [True] * 2


def test_fine_grained_skips_the_discrete_steps_and_ranks_with_triplets(shared_data, tmp_path):
    shoes = shared_data / "shoes_v1"
    if not (shoes / "triplets.json").is_file():
        pytest.skip(f"{shoes} is missing")
    ids = sorted(json.loads((shoes / "split.json").read_text())["train"], key=int)[:6]
    dataset = load_dataset(shoes).restrict_classes(ids)
    data = drain(prepare_arrays(dataset, 64, 64))
    torch.manual_seed(0)
    model = create("gdh", bits=32, **TINY)
    config = TrainConfig(
        method="gdh", options={"disc_channels": 8}, batch_size=3, per_class=1, split=None
    )
    proc = GDHProcedure(model, data, config, torch.device("cpu"))
    ctx = StepContext(torch.device("cpu"), proc.build_optimizers(), 5.0, False)
    b_before = proc.b_p.clone()
    batch = proc.epoch_batches(0, torch.Generator().manual_seed(0))[0]
    assert len(batch) == 3 and len(batch[0]) == 3  # (sketches, positives, negatives)
    proc.train_mode()
    terms = proc.step(batch, ctx)
    assert "triplet" in terms and "sem" not in terms and proc.lam == 1.0
    assert proc.on_epoch_end(0) == {} and torch.equal(proc.b_p, b_before)


def test_short_real_run_beats_random(sketchy, tmp_path):
    """3 Sketchy classes at 64 px with the residual generators of the CPU configuration, 8 steps of
    12 sketches + 12 photos with the pretrained hashing trunk, then the held-out test sketches
    and photos of those classes ranked through the engine index: retrieval must beat the random
    expectation."""
    torch.set_num_threads(1)
    classes = FEW_CLASSES[:3]
    config = TrainConfig(
        method="gdh",
        model={"bits": 32, **TINY, "pretrained": True, "skip": True},
        options={"disc_channels": 8},
        classes=classes,
        epochs=2,
        batch_size=12,
        per_class=4,
        lr=1e-3,
        max_steps_per_epoch=4,
        workers=1,
    )
    out = tmp_path / "gdh.safetensors"
    result = drain(train(config, sketchy, out))
    assert result.global_step == 8 and np.isfinite(result.losses["total"])
    loaded = load_checkpoint(out)
    assert model_id(loaded) == result.model_id
    report = drain(
        evaluate(loaded, sketchy, EvalConfig(split="test", classes=classes, baseline=False))
    )
    assert report.real_valued["map_all"] > report.random["map_all"], report.to_json()
    assert report.metrics["map_all"] > report.random["map_all"], report.to_json()
