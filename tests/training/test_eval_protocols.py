"""The evaluation protocols of issue 16 on the real data: unseen20 (the 20 held-out classes, all
their sketches against all their photos) and doodle queries (QuickDraw drawings rasterised as the
canvas does); their figures stored beside the main ones, never over them; `evaluate` and `models`
on the command line."""

import json

import numpy as np
import pytest
import torch

from app.cli import main
from engine.errors import ConfigError
from engine.models import create, read_checkpoint_info, save_checkpoint
from engine.paths import models_dir
from training import EvalConfig, evaluate, store_metrics
from training.data import UNSEEN_VALIDATION_CLASSES, class_key, load_dataset
from training.evaluate import _view, protocol_key
from training.progress import drain
from training.sources import quickdraw_files


@pytest.fixture(scope="module")
def quickdraw(shared_data):
    root = shared_data / "quickdraw"
    if not root.is_dir():
        pytest.skip(f"{root} is missing")
    return root


@pytest.fixture
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create("baseline", bits=32, image_size=96, pretrained=False).eval()
    return save_checkpoint(model, tmp_path / "tiny.safetensors", name="tiny")


def test_unseen20_view_is_the_20_classes_whole(sketchy):
    full = load_dataset(sketchy)
    _, view, split = _view(full, EvalConfig(protocol="unseen20"))
    held = {class_key(c) for c in UNSEEN_VALIDATION_CLASSES}
    assert split is None and len(view.classes) == 20
    assert {class_key(c) for c in view.classes} == held
    in_held = [class_key(full.classes[p.label]) in held for p in full.photos]
    assert len(view.photos) == sum(in_held) == 500  # both splits: none of them was trained on
    assert len(view.sketches) == 500
    with pytest.raises(ConfigError, match="chooses its own classes"):
        EvalConfig(protocol="unseen20", classes=("dog",))


def test_doodle_view_queries_with_quickdraw_of_the_classes_drawn(sketchy, quickdraw):
    full = load_dataset(sketchy)
    _, view, _ = _view(
        full, EvalConfig(protocol="unseen20", doodles=quickdraw, doodles_per_class=3)
    )
    drawn = {class_key(c) for c in UNSEEN_VALIDATION_CLASSES} & set(quickdraw_files(quickdraw))
    assert {class_key(c) for c in view.classes} == drawn and len(drawn) == 18  # not jellyfish,
    assert all(s.source == "quickdraw" and s.strokes for s in view.sketches)  # nor pretzel
    assert len(view.sketches) == 3 * 18
    assert len(view.photos) == 25 * 18  # the gallery: the photos of the classes drawn


def test_protocol_keys():
    assert protocol_key(EvalConfig()) is None
    assert protocol_key(EvalConfig(protocol="unseen20")) == "unseen20"
    assert protocol_key(EvalConfig(doodles="q")) == "doodles"
    assert protocol_key(EvalConfig(protocol="unseen20", doodles="q")) == "unseen20_doodles"


def test_protocol_figures_are_stored_beside_the_main_ones(sketchy, quickdraw, tiny_checkpoint):
    from engine.models import load_checkpoint

    model = load_checkpoint(tiny_checkpoint)
    main_config = EvalConfig(classes=("airplane", "apple"), baseline=False, real_valued=False)
    main_report = drain(evaluate(model, sketchy, main_config))
    store_metrics(tiny_checkpoint, main_report)
    doodle_config = EvalConfig(
        protocol="unseen20", doodles=quickdraw, doodles_per_class=2, baseline=False
    )
    report = drain(evaluate(model, sketchy, doodle_config))

    proto = report.protocol
    assert report.key == "unseen20_doodles" and proto["class_count"] == 18
    assert proto["queries"] == 36 and proto["gallery"] == 450
    assert "QuickDraw" in proto["query_source"] and proto["split"].startswith("none")
    assert 0 < report.random["map_all"] < 0.1 and 0 <= report.metrics["map_all"] <= 1
    assert set(report.real_valued) == set(report.metrics)

    store_metrics(tiny_checkpoint, report)
    info = read_checkpoint_info(tiny_checkpoint)
    assert info.metrics == main_report.metrics  # the main figures are untouched
    stored = info.metadata["metrics"]["protocols"]["unseen20_doodles"]
    assert stored["metrics"] == report.metrics and stored["protocol"]["key"] == report.key
    store_metrics(tiny_checkpoint, main_report)  # storing the main figures again keeps them
    assert (
        "unseen20_doodles" in read_checkpoint_info(tiny_checkpoint).metadata["metrics"]["protocols"]
    )


def test_doodle_queries_are_the_canvas_pixels(sketchy, quickdraw, tiny_checkpoint):
    """A doodle query is what the searcher hands the model for the same strokes (the canvas's
    rasterisation, resized at the model's boundary), up to the uint8 rounding of the resize."""
    from engine.models import load_checkpoint
    from engine.models.base import sketch_tensor
    from engine.sketch import rasterize
    from training.arrays import prepare_arrays

    model = load_checkpoint(tiny_checkpoint)
    _, view, _ = _view(load_dataset(sketchy), EvalConfig(doodles=quickdraw, doodles_per_class=1))
    data = drain(prepare_arrays(view, model.photo_size, model.sketch_size))
    for i in (0, len(view.sketches) - 1):
        canvas = rasterize(view.sketches[i].strokes)  # what the searcher hands the model
        theirs = sketch_tensor(canvas, model.sketch_size, torch.device("cpu"))[0, 0].numpy()
        ours = data.sketches[i] / 255.0
        assert np.abs(ours - theirs).max() <= 0.5 / 255 + 1e-6
        assert (ours < 0.5).sum() > 20  # a drawing, not blank paper


def test_cli_evaluate_protocol_and_models(sketchy, quickdraw, tiny_checkpoint, capsys):
    ckpt = models_dir() / "tiny.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    args = ["evaluate", "--model", str(ckpt), "--data", str(sketchy), "--no-baseline"]
    args += ["--protocol", "unseen20", "--doodles", str(quickdraw), "--doodles-per-class", "1"]
    assert main([*args, "--store", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["protocol"]["key"] == "unseen20_doodles"
    assert printed["protocol"]["queries"] == 18

    assert main(["models", "--json"]) == 0
    listed = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checkpoints"]}
    assert listed["tiny"]["protocols"]["unseen20_doodles"]["metrics"] == printed["metrics"]
    assert listed["tiny"]["metrics"] == {}  # no main figures were stored
    assert main(["models"]) == 0
    shown = capsys.readouterr().out
    assert "unseen20_doodles: " in shown and f"map_all {printed['metrics']['map_all']:.3f}" in shown

    assert main([*args, "--rerank"]) == 2
    assert "standard protocol only" in capsys.readouterr().err
