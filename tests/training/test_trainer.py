"""The trainer loop: resume is bit-for-bit, cancel leaves a loadable checkpoint, and a short real
run on a few sketchy classes beats a random ranking by a margin measured here."""

import json
import threading

import numpy as np
import pytest
import torch

from engine.models import load_checkpoint
from tests.training.conftest import FEW_CLASSES
from training import EvalConfig, TrainConfig, evaluate, run_files, train
from training.metrics import random_map_spread
from training.progress import drain
from training.state import load_state, save_state


def tiny_config(**changes) -> TrainConfig:
    base = TrainConfig(
        model={"bits": 32, "image_size": 96, "pretrained": False},
        epochs=2,
        batch_size=4,
        per_class=2,
        max_steps_per_epoch=2,
        classes=FEW_CLASSES[:2],
        lr=1e-3,
        seed=7,
    )
    return base.replace(**changes)


def test_state_round_trip_keeps_types(tmp_path):
    state = {
        "a": {3: torch.arange(4.0), "b": (1, 2.5)},
        "c": [None, True, "x"],
        "d": torch.tensor(2.0),
    }
    save_state(tmp_path / "s", state)
    back = load_state(tmp_path / "s")
    assert set(back["a"]) == {3, "b"} and back["a"]["b"] == (1, 2.5)
    assert torch.equal(back["a"][3], torch.arange(4.0)) and back["d"].shape == ()
    assert back["c"] == [None, True, "x"]


def test_resume_is_bit_for_bit_and_cancel_leaves_checkpoint(sketchy, tmp_path):
    straight = drain(train(tiny_config(), sketchy, tmp_path / "a" / "m.safetensors"))
    assert straight.global_step == 4 and not straight.cancelled

    cancel = threading.Event()

    def stop_after_3(event):
        if event.phase == "step" and event.global_step == 3:
            cancel.set()

    out = tmp_path / "b" / "m.safetensors"
    cut = drain(train(tiny_config(), sketchy, out, cancel=cancel), stop_after_3)
    assert cut.cancelled and cut.global_step == 3
    loadable = load_checkpoint(out)  # cancel leaves a loadable checkpoint
    assert loadable.bits == 32
    resumed = drain(train(tiny_config(), sketchy, out, resume=out))
    assert resumed.global_step == 4 and not resumed.cancelled

    a = load_checkpoint(straight.checkpoint).state_dict()
    b = load_checkpoint(resumed.checkpoint).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.model_id == resumed.model_id

    events = [json.loads(line)["event"] for line in run_files(out)[2].read_text().splitlines()]
    assert events[0] == "config" and "cancelled" in events and "resume" in events
    assert events[-1] == "done"


def test_short_real_run_beats_random_ranking(sketchy, tmp_path):
    config = TrainConfig(
        model={"bits": 64, "image_size": 96},
        epochs=1,
        batch_size=12,
        per_class=2,
        max_steps_per_epoch=10,
        classes=FEW_CLASSES,
        lr=3e-3,
        options={"backbone_lr_scale": 0.3},
        seed=0,
    )
    losses = []
    result = drain(
        train(config, sketchy, tmp_path / "m.safetensors"),
        lambda e: losses.append(e.losses["total"]) if e.phase == "step" else None,
    )
    assert np.isfinite(losses).all()
    model = load_checkpoint(result.checkpoint)
    report = drain(evaluate(model, sketchy, EvalConfig(classes=FEW_CLASSES, baseline=False)))
    # the margin: 3 standard deviations of the mAP of random rankings of this very gallery
    from training.data import load_dataset

    test = load_dataset(sketchy).restrict_classes(FEW_CLASSES).subset("test")
    photo_labels = np.array([p.label for p in test.photos])
    mask = np.array([s.label for s in test.sketches])[:, None] == photo_labels[None, :]
    mean, std = random_map_spread(mask, trials=500, seed=0)
    assert report.random["map_all"] == pytest.approx(mean, abs=2 * std / np.sqrt(500) + 1e-3)
    print(
        f"tiny run mAP {report.metrics['map_all']:.3f} (real {report.real_valued['map_all']:.3f})"
        f" vs random {mean:.3f} +- {std:.3f}"
    )
    assert report.metrics["map_all"] > mean + 3 * std
    assert report.protocol["queries"] == len(test.sketches)
