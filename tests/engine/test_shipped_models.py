"""Every model shipped in assets/models: loads safely, fits the size limit, carries its measured
figures, and still retrieves on real data of the kind it was trained on (held-out test split)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.models import load_checkpoint, read_checkpoint_info
from engine.store import SHIPPED_DIR
from training import EvalConfig, evaluate
from training.data import load_dataset
from training.progress import drain

SHIPPED = sorted(SHIPPED_DIR.glob("*.safetensors"))
SKETCHY_CLASSES = ("airplane", "apple", "banana")


def test_the_default_and_the_methods_models_are_shipped():
    methods = {read_checkpoint_info(p).method for p in SHIPPED}
    assert {"baseline", "semi3", "dsh", "dssa", "gdh"} <= methods
    assert (SHIPPED_DIR / "default.safetensors") in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_model_is_small_and_carries_its_figures(path):
    assert path.stat().st_size < 25e6
    info = read_checkpoint_info(path)
    assert info.metrics, f"{path.name}: run `sketch-search evaluate --store` on it"
    assert info.metadata.get("weights_dtype", "float32") in ("float16", "float32")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_model_beats_random_on_held_out_data(path, shared_data):
    torch.set_num_threads(1)
    info = read_checkpoint_info(path)
    category = "map_all" in info.metrics
    data = shared_data / ("sketchy" if category else "shoes_v1")
    config = EvalConfig(split="test", classes=SKETCHY_CLASSES if category else None, baseline=False)
    report = drain(evaluate(load_checkpoint(path), data, config))
    key = "map_all" if category else "acc_10"
    assert np.isfinite(report.metrics[key])
    assert report.metrics[key] > report.random[key], report.to_json()


def test_the_default_carries_its_recipes_zero_shot_figures():
    """The default is chosen for subjects it never trained on: its checkpoint carries the
    figures of its recipe trained without the unseen20 classes (sketches and doodles), and
    those beat random on them (issue 16)."""
    info = read_checkpoint_info(SHIPPED_DIR / "default.safetensors")
    protocols = info.metadata["metrics"]["protocols"]
    for key in ("unseen20_recipe_validation", "unseen20_doodles_recipe_validation"):
        figures = protocols[key]
        assert figures["measured_on"]["trained_without"] == "unseen20"
        assert figures["metrics"]["map_all"] > 3 * figures["random"]["map_all"], key


def test_the_default_ranks_better_by_the_asymmetric_distance(shared_data):
    """What the app does by default (the asymmetric ranking, with expansion) finds more of the
    right photos than the codes' Hamming distance alone, on held-out photos and sketches of 26
    Sketchy classes, every fourth (issue 16: on the whole test split 0.400 -> 0.440 -> 0.456
    against the photos' codes; on each quarter of the classes, both gain 0.03 to 0.09)."""
    torch.set_num_threads(1)
    classes = tuple(sorted(load_dataset(shared_data / "sketchy").classes)[::4])
    config = EvalConfig(split="test", classes=classes, baseline=False, real_valued=False)
    model = load_checkpoint(SHIPPED_DIR / "default.safetensors")
    report = drain(evaluate(model, shared_data / "sketchy", config))
    assert report.asymmetric["map_all"] > report.metrics["map_all"], report.to_json()
    assert report.expanded["map_all"] > report.metrics["map_all"], report.to_json()
    # against the photos' stored outputs (the app's ranking since stop 27) more than against
    # their codes alone (whole test split: 0.456 -> 0.515)
    codes_only = report.codes_only["expanded"]["map_all"]
    assert report.expanded["map_all"] > codes_only, report.to_json()


FINE_GRAINED = [p for p in SHIPPED if "map_all" not in read_checkpoint_info(p).metrics]


@pytest.mark.parametrize("path", FINE_GRAINED, ids=lambda p: p.stem)
def test_a_fine_grained_model_beats_hog_by_its_codes(path, shared_data):
    """Each shipped fine-grained model finds its sketch's own photo in the top 10 by Hamming
    distance more often than the classical HOG baseline's 64-bit codes do, on the test split
    of the data set it was trained on (issue 17), with the engine's edge maps."""
    torch.set_num_threads(1)
    info = read_checkpoint_info(path)
    data = Path(info.metadata["data"]["root"]).name  # where it was trained: shoes_v1, chairs_v1
    config = EvalConfig(split="test", real_valued=False)
    report = drain(evaluate(load_checkpoint(path), shared_data / data, config))
    assert report.metrics["acc_10"] > report.baseline["acc_10"], report.to_json()
    assert report.codes["distinct"] > report.codes["gallery"] // 2  # the codes did not collapse
