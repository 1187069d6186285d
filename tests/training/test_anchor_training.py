"""The anchor method's training: ImageNet class names, doodles of ImageNet classes, and a short
real run (frozen photo side, fitted codes, retrieval above random on held-out sketches)."""

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.models import load_checkpoint
from engine.models.backbones import efficientnet_lite0
from training.config import TrainConfig
from training.data import UNSEEN_VALIDATION_CLASSES, class_key, is_hidden_class
from training.evaluate import EvalConfig, evaluate
from training.imagenet import imagenet_index
from training.progress import drain
from training.sources import training_dataset
from training.trainer import train

CLASSES = ("cat", "teapot", "umbrella", "zebra", "violin")


def test_imagenet_names_match_lemmas_and_never_a_hidden_class():
    assert imagenet_index("saxophone") == imagenet_index("sax") == 776  # "sax, saxophone"
    assert imagenet_index("wine_bottle") == imagenet_index("Wine Bottle") == 907
    assert imagenet_index("harp") == 594  # not the harmonica, which also lists "harp"
    assert imagenet_index("no such thing") == -1
    # ImageNet has a (computer) mouse and a window screen; hidden test classes get nothing
    assert imagenet_index("mouse") == -1 and is_hidden_class("mouse")


def test_imagenet_doodle_classes_add_photoless_classes_but_no_hidden_or_held_out(shared_data):
    config = TrainConfig(
        method="anchor",
        doodles=str(shared_data / "quickdraw"),
        doodles_per_class=2,
        doodle_classes="imagenet",
        hold_out="unseen20",
    )
    data = training_dataset(config, shared_data / "sketchy")
    with_photos = {data.classes[p.label] for p in data.photos}
    added = [c for c in data.classes if c not in with_photos]
    assert len(added) > 30  # QuickDraw words that ImageNet names and Sketchy lacks
    assert all(imagenet_index(c) >= 0 for c in added)
    assert not any(is_hidden_class(c) for c in data.classes)
    held = {class_key(c) for c in UNSEEN_VALIDATION_CLASSES}
    assert not held & {class_key(c) for c in data.classes}
    drawn = {data.classes[s.label] for s in data.sketches}
    assert set(added) <= drawn  # every added class has its doodles
    with pytest.raises(ConfigError, match="needs a QuickDraw folder"):
        TrainConfig(method="anchor", doodle_classes="imagenet")


def test_a_method_without_photoless_classes_refuses_them(shared_data, tmp_path):
    config = TrainConfig(
        method="baseline",
        doodles=str(shared_data / "quickdraw"),
        doodle_classes="imagenet",
        doodles_per_class=1,
    )
    with pytest.raises(ConfigError, match="classes with photos only"):
        drain(train(config, shared_data / "sketchy", tmp_path / "b.safetensors"))


@pytest.mark.slow
def test_short_anchor_run_trains_only_the_sketch_side_and_beats_random(shared_data, tmp_path):
    config = TrainConfig(
        method="anchor",
        model={"bits": 32, "image_size": 96, "photo_size": 96},
        classes=CLASSES,
        epochs=2,
        batch_size=12,
        max_steps_per_epoch=4,
        freeze_blocks=3,
        lr=3e-4,
        seed=0,
    )
    out = tmp_path / "anchor.safetensors"
    result = drain(train(config, shared_data / "sketchy", out))
    assert result.epochs_done == 2
    model = load_checkpoint(out)
    imagenet = efficientnet_lite0(pretrained=True, num_classes=0).state_dict()
    photo = model.photo_trunk.state_dict()
    sketch = model.sketch_trunk.state_dict()
    # the photo encoder is ImageNet's, untouched (stored float32 here: exactly equal)
    assert all(torch.equal(photo[k], imagenet[k]) for k in imagenet)
    # the sketch encoder's frozen stem is ImageNet's; its upper stages learnt
    assert torch.equal(sketch["conv_stem.weight"], imagenet["conv_stem.weight"])
    assert not torch.equal(sketch["conv_head.weight"], imagenet["conv_head.weight"])
    assert model.fitted_codes is not None and model.fitted_codes.is_fitted
    report = drain(
        evaluate(model, shared_data / "sketchy", EvalConfig(classes=CLASSES, baseline=False))
    )
    assert report.protocol["queries"] >= 15
    assert report.metrics["map_all"] > report.random["map_all"] + 0.1  # 0.61 vs 0.38 here
    codes = model.encode_photos(np.zeros((2, 96, 96, 3), np.uint8))
    assert codes.shape == (2, 4)
