"""DSSA training: the HOLEF loss against a naive loop, released edge maps, and a short real run
on QMUL-Shoe pairs that must beat a random ranking (with its re-ranking figures)."""

import json
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.errors import ConfigError, DatasetError
from engine.models import create
from training import EvalConfig, TrainConfig, evaluate, load_dataset, losses, train
from training.arrays import prepare_arrays
from training.methods.dssa import edge_arrays
from training.progress import drain
from training.reranking import reranking_figures


def naive_holef_loss(a, p, n, w, margin, lam):
    def d(x, y):
        return sum(
            float(w[i, j]) * float(x[i] - y[j]) ** 2 for i in range(len(x)) for j in range(len(y))
        )

    hinge = np.mean([max(0.0, margin + d(a[k], p[k]) - d(a[k], n[k])) for k in range(len(a))])
    dev = (w - torch.eye(len(w))).numpy()
    return hinge + lam * (np.abs(dev).sum() + np.sqrt((dev**2).sum()))


def test_holef_triplet_matches_naive_loop_and_euclidean_ablation():
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(4, 3, generator=g) for _ in range(3))
    w = torch.eye(3) + 0.2 * torch.randn(3, 3, generator=g)
    got = losses.holef_triplet(a, p, n, w, margin=1.0, lam=0.1)
    assert float(got) == pytest.approx(naive_holef_loss(a, p, n, w, 1.0, 0.1), rel=1e-5)
    torch.testing.assert_close(
        losses.holef_triplet(a, p, n, None, 1.0), losses.triplet(a, p, n, 1.0)
    )
    # at the identity the Frobenius term has no gradient of its own: still finite
    eye = torch.eye(3, requires_grad=True)
    losses.holef_triplet(a, p, n, eye, margin=1.0).backward()
    assert bool(torch.isfinite(eye.grad).all())


def test_holef_in_batch_matches_naive_loop_over_every_negative():
    g = torch.Generator().manual_seed(1)
    a, c = torch.randn(3, 4, generator=g), torch.randn(5, 4, generator=g)
    w = torch.eye(4) + 0.1 * torch.randn(4, 4, generator=g)
    positive = torch.tensor([0, 1, 2])
    same = torch.zeros(3, 5, dtype=torch.bool)
    same[torch.arange(3), positive] = True
    same[0, 3] = True  # e.g. the anchor's own photo under an annotated pair: not a negative
    got = losses.holef_triplet_in_batch(a, c, positive, same, w, margin=0.5, lam=0.01)

    def d(x, y):
        return sum(float(w[i, j]) * float(x[i] - y[j]) ** 2 for i in range(4) for j in range(4))

    hinges = [
        max(0.0, 0.5 + d(a[i], c[positive[i]]) - d(a[i], c[j]))
        for i in range(3)
        for j in range(5)
        if not same[i, j]
    ]
    dev = (w - torch.eye(4)).numpy()
    expected = np.mean(hinges) + 0.01 * (np.abs(dev).sum() + np.sqrt((dev**2).sum()))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    active = losses.holef_triplet_in_batch(a, c, positive, same, w, 0.5, 0.01, active=True)
    violated = [h for h in hinges if h > 0]
    reg = expected - np.mean(hinges)
    assert float(active) == pytest.approx(np.mean(violated) + reg, rel=1e-5)
    # one negative per anchor: the in-batch loss is the plain HOLEF triplet loss
    n = torch.randn(3, 4, generator=g)
    single = torch.cat([c[:3], n])
    only = torch.ones(3, 6, dtype=torch.bool)
    only[torch.arange(3), torch.arange(3, 6)] = False
    torch.testing.assert_close(
        losses.holef_triplet_in_batch(a, single, positive, only, w, 0.5, 0.01),
        losses.holef_triplet(a, c[:3], n, w, 0.5, 0.01),
    )


@pytest.fixture
def shoes(shared_data):
    root = shared_data / "shoes_v1"
    if not (root / "triplets.json").is_file():
        pytest.skip(f"{root} is missing")
    return root


def _ids(root, split, count):
    return sorted(json.loads((root / "split.json").read_text())[split], key=int)[:count]


def test_released_edge_maps_are_the_data_sets_files(shoes, tmp_path):
    dataset = load_dataset(shoes).restrict_classes(_ids(shoes, "test", 3))
    data = drain(prepare_arrays(dataset, 96, 96))
    model = create("dssa", image_size=96, pretrained=False)
    edges, source = edge_arrays(model, data, "auto")
    assert source == "released" and edges.shape == (3, 96, 96) and edges.dtype == np.uint8
    assert edges.mean() > 200  # white paper, dark lines, like sketches
    # the engine's edges are the model's own (its edge_threshold), as at search time
    loose = create("dssa", image_size=96, pretrained=False, edge_threshold=0.2)
    ours, source = edge_arrays(loose, data, "engine")
    photos = torch.from_numpy(data.photos).permute(0, 3, 1, 2).float() / 255.0
    searched = loose.raw_edge_maps(photos)[:, 0].mul(255).round().to(torch.uint8).numpy()
    assert source == "engine" and np.array_equal(ours, searched)
    assert (ours < 128).sum() > (edge_arrays(model, data, "engine")[0] < 128).sum()
    with pytest.raises(ConfigError, match="edges must be one of"):
        edge_arrays(model, data, "hed")
    with pytest.raises(ConfigError, match="no released edge maps"):
        EvalConfig(edges="released", extra_gallery=tmp_path)
    no_edges = type(dataset)(**{**dataset.__dict__, "edges": {}})
    with pytest.raises(DatasetError, match="no released edge map"):
        edge_arrays(model, type(data)(**{**data.__dict__, "dataset": no_edges}), "released")


def test_short_real_run_beats_random(shoes, tmp_path):
    """32 QMUL-Shoe training pairs, 6 epochs at 96 px, then the same pairs ranked through the
    engine index (no augmentation at test time): the model must have learnt them (real-valued:
    by 3 standard deviations of acc@10 over random rankings of this gallery)."""
    torch.set_num_threads(1)
    train_ids = tuple(_ids(shoes, "train", 32))
    config = TrainConfig(
        method="dssa",
        model={"image_size": 96, "bits": 32},
        options={"edges": "released", "true_match": 1.0},
        classes=train_ids,
        epochs=6,
        batch_size=8,
        lr=1e-3,
        workers=1,
    )
    out = tmp_path / "dssa.safetensors"
    result = drain(train(config, shoes, out))
    assert result.global_step == 24 and np.isfinite(result.losses["total"])

    from engine.models import load_checkpoint

    model = load_checkpoint(out)
    eval_config = EvalConfig(split="train", classes=train_ids, edges="released", baseline=False)
    rerank = {"reranking": reranking_figures((5, 32))}  # measured in the same evaluation
    report = drain(evaluate(model, shoes, eval_config, extras=rerank))
    assert report.protocol["edges"] == "released" and report.protocol["gallery"] == 32
    chance = report.random["acc_10"]
    spread = 3 * np.sqrt(chance * (1 - chance) / 32)
    # real-valued by a margin; the 32-bit codes of so short a run only above the expectation
    assert report.real_valued["acc_10"] > chance + spread, report.to_json()
    assert report.metrics["acc_10"] > chance, report.to_json()

    rerank = report.extras["reranking"]
    assert rerank["binary"] == report.metrics  # the same index path as the evaluator
    assert rerank["reranked_top32"] == rerank["holef_exhaustive"]  # whole gallery re-ranked
    assert rerank["holef_exhaustive"]["acc_10"] > chance, rerank
    assert rerank["protocol"]["features"] == "512-d float16"


def _tiny_run(train_ids, model: dict, options: dict, epochs: int) -> TrainConfig:
    """A DSSA run of a few steps on ``train_ids`` of QMUL-Shoe, batches of 8."""
    return TrainConfig(
        method="dssa",
        model=model,
        options=options,
        classes=train_ids,
        epochs=epochs,
        batch_size=8,
        lr=1e-3,
        workers=1,
    )


def test_cache_trunk_trains_the_head_on_frozen_cached_maps(shoes, tmp_path):
    """cache_trunk: the stem and seven stages keep their ImageNet weights, the head conv and the
    rest learn, and the cached views are the trunk's maps of the drawing and its mirror."""
    torch.set_num_threads(1)
    from engine.models import load_checkpoint
    from engine.models.backbones import efficientnet_lite0

    train_ids = tuple(_ids(shoes, "train", 16))
    options = {"edges": "released", "true_match": 1.0, "cache_trunk": True}
    config = _tiny_run(train_ids, {"image_size": 96, "bits": 32}, options, epochs=2)
    out = tmp_path / "dssa.safetensors"
    result = drain(train(config, shoes, out))
    assert result.global_step == 4 and np.isfinite(result.losses["total"])
    trained = load_checkpoint(out).backbone.trunk.state_dict()
    imagenet = efficientnet_lite0(pretrained=True, num_classes=0).state_dict()
    for key in ("conv_stem.weight", "blocks.6.0.conv_pwl.weight", "bn1.running_mean"):
        torch.testing.assert_close(trained[key], imagenet[key])
    assert not torch.equal(trained["conv_head.weight"], imagenet["conv_head.weight"])

    from training.methods.dssa import DSSAProcedure

    model = load_checkpoint(out)
    data = drain(prepare_arrays(load_dataset(shoes).restrict_classes(train_ids[:4]), 96, 96))
    procedure = DSSAProcedure(model, data, config, torch.device("cpu"))
    drain(procedure.prepare(threading.Event()))
    cache = procedure.cache["sketch"]
    assert cache.shape[:2] == (2, 4)
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(data.sketches)[:, None].float() / 255
        torch.testing.assert_close(cache[0], model.trunk_maps(x))
        torch.testing.assert_close(cache[1], model.trunk_maps(x.flip(3)))


def test_both_edge_kinds_are_cached_and_drawn_from_and_released_ones_are_optional(shoes):
    """edges "both": the edge cache holds the engine's and the released maps (each with its
    mirror), a step draws from either, and hard negatives are mined on the engine's; a data set
    without released edge maps trains on the engine's alone."""
    torch.set_num_threads(1)
    from training.methods.dssa import DSSAProcedure, edge_kinds

    train_ids = tuple(_ids(shoes, "train", 4))
    dataset = load_dataset(shoes).restrict_classes(train_ids)
    data = drain(prepare_arrays(dataset, 96, 96))
    model = create("dssa", image_size=96, bits=32, edge_threshold=0.2)
    options = {"edges": "both", "cache_trunk": True}
    config = _tiny_run(train_ids, {"image_size": 96, "bits": 32}, options, epochs=1)
    procedure = DSSAProcedure(model, data, config, torch.device("cpu"))
    assert procedure.edge_names == ["engine", "released"]
    engine, released = (model.canonical_edges(a) for a, _ in edge_kinds(model, data, "both"))
    assert not np.array_equal(engine, released)
    np.testing.assert_array_equal(procedure.edges, engine)  # what mining ranks
    drain(procedure.prepare(threading.Event()))
    cache = procedure.cache["edge"]
    assert cache.shape[:2] == (4, 4)  # engine, engine mirrored, released, released mirrored
    model.eval()
    with torch.no_grad():
        for view, kind in ((0, engine), (2, released)):
            x = torch.from_numpy(kind)[:, None].float() / 255
            torch.testing.assert_close(cache[view], model.trunk_maps(x))
    torch.manual_seed(0)
    drawn = procedure._cached("edge", [0, 1, 2, 3] * 8)  # 32 draws of 4 views each
    kinds = {
        int(v) for v in range(4) for row in range(32) if torch.equal(drawn[row], cache[v, row % 4])
    }
    assert kinds == {0, 1, 2, 3}

    no_edges = type(dataset)(**{**dataset.__dict__, "edges": {}})
    plain = type(data)(**{**data.__dict__, "dataset": no_edges})
    assert [source for _, source in edge_kinds(model, plain, "both")] == ["engine"]
    with pytest.raises(ConfigError, match="edges must be one of"):
        edge_kinds(model, data, "hed")


def test_trunk_from_the_default_sketch_encoder_with_its_last_stage_trained(shoes, tmp_path):
    """trunk_from "default": the trunk starts as the shipped default model's sketch encoder;
    train_stages 1: the stem and stages 1-6 keep those weights while stage 7 learns, and the
    cache holds the maps after stage 6, which the rest of the network continues from."""
    torch.set_num_threads(1)
    from engine.model_files import default_checkpoint
    from engine.models import load_checkpoint
    from training.methods.dssa import DSSAProcedure

    sketch_encoder = load_checkpoint(default_checkpoint()).sketch_trunk.state_dict()
    train_ids = tuple(_ids(shoes, "train", 16))
    options = {"edges": "released", "trunk_from": "default", "train_stages": 1}
    config = _tiny_run(train_ids, {"image_size": 96, "bits": 32}, options, epochs=2)
    out = tmp_path / "dssa.safetensors"
    drain(train(config, shoes, out))
    model = load_checkpoint(out)
    trained = model.backbone.trunk.state_dict()
    for key in ("conv_stem.weight", "bn1.running_var", "blocks.5.3.conv_pwl.weight"):
        torch.testing.assert_close(trained[key], sketch_encoder[key].float())
    for key in ("blocks.6.0.conv_pwl.weight", "conv_head.weight"):
        assert not torch.equal(trained[key], sketch_encoder[key].float()), key

    data = drain(prepare_arrays(load_dataset(shoes).restrict_classes(train_ids[:4]), 96, 96))
    procedure = DSSAProcedure(model, data, config, torch.device("cpu"))
    drain(procedure.prepare(threading.Event()))
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(data.sketches)[:, None].float() / 255
        maps = model.trunk_maps(x, 6)
        torch.testing.assert_close(procedure.cache["sketch"][0], maps)
        torch.testing.assert_close(model.head_features(maps, 6), model.features(x))
    with pytest.raises(ConfigError, match="train_stages"):
        DSSAProcedure(model, data, replace(config, options={"train_stages": 8}), "cpu")
    from engine.models import create

    unfitted = create("dssa", bits=32, image_size=96, hog_weight=1.0)  # a new model's HOG term
    with pytest.raises(ConfigError, match="fit-codes --hog-weight"):
        DSSAProcedure(unfitted, data, config, "cpu")


def test_training_with_fitted_codes_fits_the_hog_term_too(shoes, tmp_path):
    """A new model asked for with hog_weight and fitted codes (the Train panel's way) gets its
    HOG term fitted by the trainer with the codes, on the training split only, and re-ranks
    with it; an unfitted term would have refused every feature."""
    torch.set_num_threads(1)
    from engine.models import load_checkpoint, read_checkpoint_info

    train_ids = tuple(_ids(shoes, "train", 16))
    model_options = {"image_size": 96, "bits": 16, "codes": "fitted", "codes_from": "features"}
    model = {**model_options, "hog_weight": 1.0, "hog_dim": 8}
    config = _tiny_run(train_ids, model, {"edges": "released"}, epochs=1)
    out = tmp_path / "dssa.safetensors"
    drain(train(config, shoes, out))
    model = load_checkpoint(out)
    assert int(model.hog_fit.fitted) == 1 and model.hog_fit.basis.shape == (2916, 8)
    note = read_checkpoint_info(out).metadata["codes_fit"]["hog_term"]
    assert note["sketches"] == note["photos"] == 16 and min(note["scales"]) > 0
    data = drain(prepare_arrays(load_dataset(shoes).restrict_classes(train_ids[:4]), 96, 96))
    features = model.photo_features(data.photos)
    assert features.shape == (4, model.config.feature_dim + 8)
    np.testing.assert_allclose(np.linalg.norm(features[:, -8:], axis=1), 1.0, rtol=1e-5)
