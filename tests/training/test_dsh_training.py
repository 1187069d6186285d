"""DSH training: each loss term against a naive loop, the epoch-end D/B code update against its
definition, resume keeping B and D, and a short real Sketchy run that must beat random."""

import math
import threading

import numpy as np
import pytest
import torch

from engine.errors import CheckpointError, ConfigError
from engine.model_files import default_checkpoint
from engine.models import create, load_checkpoint
from engine.models.checkpoint import save_checkpoint
from training import EvalConfig, TrainConfig, discrete, evaluate, losses, run_files, train
from training.arrays import prepare_arrays
from training.data import load_dataset
from training.methods.dsh import DSHProcedure, class_codes, code_regression
from training.procedure import StepContext
from training.progress import drain
from training.state import load_state

from .conftest import FEW_CLASSES

TINY_MODEL = {"image_size": 64, "bits": 32, "pretrained": False, "fc1": 32, "fc2": 16}


def test_code_regression_and_pairwise_term_match_naive_loops():
    g = torch.Generator().manual_seed(0)
    u = torch.tanh(torch.randn(5, 6, generator=g))
    b = torch.where(torch.rand(5, 6, generator=g) < 0.5, -1.0, 1.0)
    naive = sum((float(b[i, k]) - float(u[i, k])) ** 2 for i in range(5) for k in range(6)) / 30
    assert float(code_regression(u, b)) == pytest.approx(naive, rel=1e-6)
    # the cross-view likelihood as DSH states it: -sum_ij [S_ij T_ij - log(1 + e^T_ij)], mean
    us, up = u[:3], torch.tanh(torch.randn(4, 6, generator=g))
    ys, yp = torch.tensor([0, 1, 1]), torch.tensor([1, 0, 2, 1])
    terms = []
    for i in range(3):
        for j in range(4):
            theta = 0.5 * sum(float(us[i, k]) * float(up[j, k]) for k in range(6))
            s = 1.0 if ys[i] == yp[j] else 0.0
            terms.append(-(s * theta - math.log(1 + math.exp(theta))))
    got = losses.pairwise_likelihood(us, up, losses.same_class(ys, yp))
    assert float(got) == pytest.approx(np.mean(terms), rel=1e-6)


def test_class_codes_are_signs_and_a_function_of_the_seed():
    a, b, c = class_codes(7, 32, 0), class_codes(7, 32, 0), class_codes(7, 32, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {-1.0, 1.0} and a.shape == (7, 32)


def _procedure(root, **options) -> DSHProcedure:
    data = drain(prepare_arrays(load_dataset(root), 64, 64))
    torch.manual_seed(0)
    model = create("dsh", **TINY_MODEL)
    config = TrainConfig(method="dsh", model=TINY_MODEL, options=options, batch_size=4, per_class=2)
    return DSHProcedure(model, data, config, torch.device("cpu"))


# the paper-like path: one-hot factorisation, the trunks in the step
PAPER_PATH = {"class_embedding": "one_hot", "cache_trunks": False}


def test_step_total_is_the_weighted_terms_and_codes_follow_labels(category_folder):
    proc = _procedure(category_folder, w_pair=0.7, w_quant=2.0, **PAPER_PATH)
    # class initialisation: every sample starts at its class's code, D at those codes
    assert torch.equal(proc.photo_codes, proc.projection[proc.photo_labels])
    assert torch.equal(proc.sketch_codes, proc.projection[proc.sketch_labels])
    ctx = StepContext(torch.device("cpu"), proc.build_optimizers(), 5.0, False)
    batch = proc.epoch_batches(0, torch.Generator().manual_seed(0))[0]
    proc.train_mode()
    out = proc.step(batch, ctx)
    assert out["total"] == pytest.approx(0.7 * out["pair"] + 2.0 * out["quant"], rel=1e-5)
    with pytest.raises(ConfigError, match="init_codes"):
        _procedure(category_folder, init_codes="words")


def test_epoch_end_update_is_the_closed_form_alternation(category_folder):
    proc = _procedure(category_folder, mu=0.5, reg=2.0, alternations=2, **PAPER_PATH)
    fp, fs = proc.network_outputs()
    labels = torch.cat([proc.photo_labels, proc.sketch_labels])
    before = torch.cat([proc.photo_codes, proc.sketch_codes])
    # what the update must give, from the definitions in training.discrete
    b, d = before, discrete.d_step(before, labels, 2.0)
    for _ in range(2):
        b = discrete.b_step(d, labels, torch.cat([fp, fs]), 0.5)
        d = discrete.d_step(b, labels, 2.0)
    figures = proc.on_epoch_end(0)
    torch.testing.assert_close(torch.cat([proc.photo_codes, proc.sketch_codes]), b)
    torch.testing.assert_close(proc.projection, d)
    assert figures["codes_flipped"] == pytest.approx(float((b != before).float().mean()))
    assert 0.0 <= figures["sign_agreement"] <= 1.0
    # the network outputs use the token maps: a model without them gives other outputs
    assert proc._edges is not None and proc._edges.shape == (len(fp), 64, 64)


def test_resume_keeps_codes_and_projection(sketchy, tmp_path):
    torch.set_num_threads(1)
    config = TrainConfig(
        method="dsh",
        model=TINY_MODEL,
        options={"init_codes": "network", "augment": False},
        classes=FEW_CLASSES[:2],
        epochs=1,
        batch_size=8,
        per_class=4,
        max_steps_per_epoch=1,
        workers=1,
    )
    out = tmp_path / "dsh.safetensors"
    drain(train(config, sketchy, out))
    saved = load_state(run_files(out)[1])["procedure"]
    assert saved["codes_ready"] is True
    # resume into a second epoch and stop before its first step: the state written then must
    # hold the resumed codes, not fresh ones (init_codes="network" would recompute them)
    cancel = threading.Event()
    run = train(config.replace(epochs=2), sketchy, out, resume=out, cancel=cancel)
    try:
        while True:
            event = next(run)
            # the last preparation: the cached trunk features of the sketches
            decoded = event.phase == "prepare" and "sketch features" in event.message
            if decoded and event.step == event.steps_per_epoch:  # stop before the first step
                cancel.set()
    except StopIteration as stop:
        result = stop.value
    assert result.cancelled
    again = load_state(run_files(out)[1])["procedure"]
    for key in ("photo_codes", "sketch_codes", "projection"):
        assert torch.equal(again[key], saved[key]), key
    assert not torch.equal(saved["projection"], class_codes(2, 32, config.seed))
    assert torch.equal(again["embedding"], saved["embedding"])
    # a new model's C2-Net started from the default model's sketch encoder, kept by the cache
    anchor = load_checkpoint(default_checkpoint())
    trained = load_checkpoint(out)
    for name, value in anchor.sketch_trunk.state_dict().items():
        assert torch.equal(trained.c2.net.state_dict()[name], value), name


@pytest.mark.parametrize(
    "model", [{}, {"sketch_tokens": False}], ids=["with-sketch-tokens", "no-sketch-tokens"]
)
def test_short_real_run_beats_random(sketchy, tmp_path, model):
    """3 Sketchy classes, 64 px, 12 steps of 12 sketches + 12 photos on the cached pretrained
    trunks (C2 the default model's sketch encoder), codes updated after each of 3 epochs; the
    training photos of those classes ranked by Hamming distance through the engine index must
    beat the random expectation."""
    torch.set_num_threads(1)
    classes = FEW_CLASSES[:3]
    config = TrainConfig(
        method="dsh",
        model={
            "image_size": 64,
            "bits": 32,
            "pretrained": True,
            "fc1": 256,
            "fc2": 128,
            # the shipped recipe's heads (DEVELOPERS.md): without BatchNorm the outputs sit at
            # the pair loss's constant optimum, the codes collapse to a handful and only the
            # file order of tied photos put them above random
            "dropout": 0.0,
            "fc_batchnorm": True,
            **model,
        },
        options={"backbone_lr_scale": 0.3},
        classes=classes,
        epochs=3,
        batch_size=12,
        per_class=4,
        lr=3e-3,
        max_steps_per_epoch=4,
        freeze_blocks=2,
        workers=1,
    )
    out = tmp_path / "dsh.safetensors"
    result = drain(train(config, sketchy, out))
    assert result.global_step == 12 and np.isfinite(result.losses["total"])
    assert set(result.losses) == {"pair", "quant", "total"}
    report = drain(
        evaluate(
            load_checkpoint(out),
            sketchy,
            EvalConfig(split="train", classes=classes, baseline=False),
        )
    )
    assert report.metrics["map_all"] > report.random["map_all"], report.to_json()


def test_cached_trunks_give_the_models_own_outputs_and_only_heads_learn(category_folder):
    proc = _procedure(category_folder, class_embedding="one_hot")
    drain(proc.prepare(threading.Event()))
    model = proc.model
    assert not any(p.requires_grad for t in (model.c1, model.c2) for p in t.parameters())
    assert set(proc.cache) == {"photo", "token", "sketch"}
    fp, fs = proc.network_outputs()
    # the cache answers what the model answers on the same photos and sketches
    photos, sketches = proc.data.photos, proc.data.sketches
    torch.testing.assert_close(
        fp, torch.tanh(torch.from_numpy(model.embed_photos(photos, raw=True))), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        fs,
        torch.tanh(torch.from_numpy(model.embed_sketches(sketches, raw=True))),
        atol=1e-4,
        rtol=0,
    )
    trunk_before = {k: v.clone() for k, v in model.c2.state_dict().items()}
    head_before = model.sketch_hash.weight.clone()
    ctx = StepContext(torch.device("cpu"), proc.build_optimizers(), 5.0, False)
    proc.train_mode()
    for batch in proc.epoch_batches(0, torch.Generator().manual_seed(0))[:2]:
        proc.step(batch, ctx)
    assert not torch.equal(model.sketch_hash.weight, head_before)
    for name, value in model.c2.state_dict().items():  # BatchNorm statistics included
        assert torch.equal(value, trunk_before[name]), name


def test_photo_prototype_codes_start_from_the_class_embedding(category_folder):
    proc = _procedure(category_folder)
    drain(proc.prepare(threading.Event()))
    classes = proc.num_classes
    e = proc.embedding
    assert e.shape == (classes, min(32, classes) + 1)
    # the embedding is the class means of the cached photo features
    expected = discrete.class_embedding(proc.cache["photo"], proc.photo_labels, classes, 32)
    torch.testing.assert_close(e, expected)
    start = discrete.embedding_codes(e, proc.model.bits, proc.config.seed)
    assert torch.equal(proc.photo_codes, start[proc.photo_labels])
    assert torch.equal(proc.sketch_codes, start[proc.sketch_labels])
    figures = proc.on_epoch_end(0)
    labels = torch.cat([proc.photo_labels, proc.sketch_labels])
    fp, fs = proc.network_outputs()
    b = discrete.b_step(proc.projection, labels, torch.cat([fp, fs]), 1.0, embedding=e)
    assert torch.equal(torch.cat([proc.photo_codes, proc.sketch_codes]), b)
    assert 0.0 <= figures["codes_flipped"] <= 1.0


def test_sketch_trunk_from_refuses_what_is_not_an_anchor_sketch_encoder(category_folder, tmp_path):
    proc = _procedure(category_folder, sketch_trunk_from=str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError):
        proc.start_new_model()
    other = tmp_path / "dsh.safetensors"
    save_checkpoint(proc.model, other)
    proc = _procedure(category_folder, sketch_trunk_from=str(other))
    with pytest.raises(CheckpointError, match="not 'anchor'"):
        proc.start_new_model()
    untouched = {k: v.clone() for k, v in proc.model.c2.state_dict().items()}
    proc = _procedure(category_folder, sketch_trunk_from="")
    proc.start_new_model()  # "": ImageNet's (here the untrained) weights stay
    for name, value in proc.model.c2.state_dict().items():
        assert torch.equal(value, untouched[name]), name
    with pytest.raises(ConfigError, match="class_embedding"):
        _procedure(category_folder, class_embedding="words")
