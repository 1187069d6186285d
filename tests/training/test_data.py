"""Data set validation: both layouts read, every malformed folder refused naming the files."""

import json
import shutil

import numpy as np
import pytest
import torch

from engine.errors import DatasetError
from tests.training.conftest import draw_sketch, photo
from training.data import CATEGORY, FINE_GRAINED, load_dataset
from training.samplers import class_balanced_batches, hard_negative_candidates, triplets


def test_category_folder_reads(category_folder):
    ds = load_dataset(category_folder)
    assert ds.layout == CATEGORY
    assert ds.classes == ("cats", "dogs")
    assert len(ds.photos) == 6 and len(ds.sketches) == 6
    assert {s.photo_key for s in ds.sketches} == {p.key for p in ds.photos}
    assert ds.subset(None) is ds


def test_sketch_without_photo_is_named(category_folder):
    draw_sketch(category_folder / "sketches" / "cats" / "ghost-1.png", 99)
    with pytest.raises(DatasetError, match=r"sketches/cats/ghost-1\.png"):
        load_dataset(category_folder)


def test_sketch_of_unknown_class_is_named(category_folder):
    draw_sketch(category_folder / "sketches" / "birds" / "p0-1.png", 98)
    with pytest.raises(DatasetError, match=r"sketches/birds/p0-1\.png"):
        load_dataset(category_folder)


def test_empty_class_is_named(category_folder):
    (category_folder / "photos" / "birds").mkdir()
    with pytest.raises(DatasetError, match=r"photos/birds/"):
        load_dataset(category_folder)


def test_split_naming_missing_photo_is_named(category_folder):
    split = {"train": ["cats/p0", "dogs/p1"], "test": ["cats/p9"]}
    (category_folder / "split.json").write_text(json.dumps(split))
    with pytest.raises(DatasetError, match=r"test: cats/p9"):
        load_dataset(category_folder)


def test_folder_fitting_no_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="photos/ and a sketches/"):
        load_dataset(tmp_path)


def test_mixed_layout_refused(category_folder):
    photo(category_folder / "photos" / "loose.jpg", 5)
    with pytest.raises(DatasetError, match=r"loose\.jpg"):
        load_dataset(category_folder)


def test_split_subset_keeps_sketches_of_split_photos(category_folder):
    (category_folder / "split.json").write_text(
        json.dumps({"train": ["cats/p0", "cats/p1", "dogs/p0"], "test": ["cats/p2", "dogs/p1"]})
    )
    test = load_dataset(category_folder).subset("test")
    assert [p.key for p in test.photos] == ["cats/p2", "dogs/p1"]
    assert sorted(s.key for s in test.sketches) == ["cats/p2-1", "dogs/p1-1"]
    with pytest.raises(DatasetError, match="no 'val' split"):
        load_dataset(category_folder).subset("val")


def test_fine_grained_folder_with_triplets(tmp_path):
    root = tmp_path / "fg"
    for i in range(4):
        photo(root / "photos" / f"{i}.jpg", i)
        draw_sketch(root / "sketches" / f"{i}.png", i)
    (root / "triplets.json").write_text(json.dumps({"0": [["0", "3"]], "1": [["1", "2"]]}))
    ds = load_dataset(root)
    assert ds.layout == FINE_GRAINED and len(ds.classes) == 4
    assert ds.triplets["0"] == (("0", "3"),)
    (root / "triplets.json").write_text(json.dumps({"0": [["0", "7"]]}))
    with pytest.raises(DatasetError, match=r"0: \['0', '7'\]"):
        load_dataset(root)


def test_real_sketchy_reads(sketchy):
    ds = load_dataset(sketchy)
    assert ds.layout == CATEGORY and len(ds.classes) == 104
    assert len(ds.photos) == 2600 and len(ds.sketches) == 2600
    assert set(ds.splits) == {"train", "test"}
    train, test = ds.subset("train"), ds.subset("test")
    assert not {p.key for p in train.photos} & {p.key for p in test.photos}
    assert len(train.sketches) + len(test.sketches) == 2600


def test_real_shoes_reads(shared_data, tmp_path):
    root = shared_data / "shoes_v1"
    if not root.is_dir():
        pytest.skip("shoes_v1 missing")
    ds = load_dataset(root)
    assert ds.layout == FINE_GRAINED and len(ds.photos) == 419
    assert len(ds.subset("train").photos) == 304 and ds.triplets
    bad = tmp_path / "shoes"
    shutil.copytree(root, bad)
    (bad / "photos" / "1.jpg").unlink()
    with pytest.raises(DatasetError, match=r"sketches/1\.png"):
        load_dataset(bad)


# ---------------------------------------------------------------------------- samplers
def test_class_balanced_batches_are_balanced_and_seeded():
    sketch_labels = np.repeat(np.arange(5), [3, 8, 2, 6, 5])
    photo_labels = np.repeat(np.arange(5), 4)
    make = lambda seed: class_balanced_batches(  # noqa: E731
        sketch_labels, photo_labels, 3, 2, torch.Generator().manual_seed(seed)
    )
    batches = make(0)
    assert len(batches) == int(np.ceil(24 / 6))
    for sketches, photos in batches:
        s_classes, p_classes = sketch_labels[sketches], photo_labels[photos]
        assert len(set(s_classes)) == 3
        assert sorted(np.unique(s_classes, return_counts=True)[1]) == [2, 2, 2]
        assert list(s_classes) == list(p_classes)  # aligned by class
    assert make(0) == batches and make(1) != batches


def test_class_balanced_epoch_visits_every_class():
    labels = np.repeat(np.arange(10), 4)
    batches = class_balanced_batches(labels, labels, 2, 2, torch.Generator().manual_seed(3))
    seen = {int(labels[i]) for s, _ in batches for i in s}
    assert seen == set(range(10))


def test_triplets_use_annotations_and_negatives():
    sketch_photo = np.array([0, 1, 2, 3])
    annotated = {0: [(0, 3)]}
    rows = triplets(sketch_photo, 4, torch.Generator().manual_seed(0), annotated)
    by_sketch = {s: (p, n) for s, p, n in rows}
    assert by_sketch[0] == (0, 3)
    for s in (1, 2, 3):
        assert by_sketch[s][0] == s and by_sketch[s][1] != s
    emb = np.eye(4)
    cand = hard_negative_candidates(emb, emb + 0.01 * np.arange(4)[:, None], sketch_photo, top=1)
    assert all(cand[i][0] != i for i in range(4))
    rows = triplets(sketch_photo, 4, torch.Generator().manual_seed(0), None, cand)
    assert all(n == cand[s][0] for s, _, n in rows)
