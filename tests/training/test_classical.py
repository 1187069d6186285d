"""The classical HOG baseline: features of the right shape, and better than chance on real data."""

import numpy as np
import pytest

pytest.importorskip("engine.edges", reason="engine.edges (edge maps) has not landed yet")

from tests.training.conftest import FEW_CLASSES
from training.arrays import prepare_arrays
from training.classical import hog_codes, photo_hog, sketch_hog
from training.data import load_dataset
from training.evaluate import binary_ranking, cosine_ranking, ranking_metrics
from training.metrics import random_map_spread
from training.progress import drain


def test_hog_baseline_beats_chance(sketchy):
    ds = load_dataset(sketchy).restrict_classes(FEW_CLASSES).subset("test")
    data = drain(prepare_arrays(ds, 128, 128))
    s, p = sketch_hog(data.sketches), photo_hog(data.photos)
    assert s.shape[1] == p.shape[1] == 1764 and np.isfinite(s).all() and np.isfinite(p).all()
    mask = data.sketch_labels[:, None] == data.photo_labels[None, :]
    n_rel = mask.sum(axis=1)
    real, random = ranking_metrics(
        np.take_along_axis(mask, cosine_ranking(s, p), axis=1), n_rel, "category"
    )
    sc, pc = hog_codes(s, p)
    binary, _ = ranking_metrics(
        np.take_along_axis(mask, binary_ranking(sc, pc, 64, "hog"), axis=1), n_rel, "category"
    )
    mean, std = random_map_spread(mask, trials=300, seed=0)
    print(
        f"HOG mAP real {real['map_all']:.3f} binary {binary['map_all']:.3f}",
        f"random {mean:.3f}+-{std:.3f}",
    )
    assert random["map_all"] == pytest.approx(mean, abs=0.01)
    assert real["map_all"] > mean + 2 * std
