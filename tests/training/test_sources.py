"""Training data from several sources (training.sources) under the class rules of issue 16: the
hidden zero-shot test classes reach no training set, by any spelling, from any source; the
unseen20 hold-out is class-disjoint; extra data never brings the main data's test split in;
doodles are drawn through the engine's stroke path and have no photo."""

import shutil

import numpy as np
import pytest
import torch

from engine.errors import ConfigError, DatasetError
from engine.sketch import read_quickdraw
from training import TrainConfig, train
from training.arrays import prepare_arrays, read_strokes
from training.data import (
    UNSEEN_VALIDATION_CLASSES,
    ZERO_SHOT_TEST_CLASSES,
    class_key,
    is_hidden_class,
    load_dataset,
)
from training.progress import drain
from training.samplers import triplets
from training.sources import doodle_sketches, quickdraw_files, training_dataset


@pytest.fixture(scope="module")
def quickdraw(shared_data):
    root = shared_data / "quickdraw"
    if not root.is_dir():
        pytest.skip(f"{root} is missing")
    return root


@pytest.fixture(scope="module")
def pacs(shared_data):
    root = shared_data / "pacs"
    if not root.is_dir():
        pytest.skip(f"{root} is missing")
    return root


def real_class(sketchy, dst, cls: str, folder: str, photos: int = 2) -> int:
    """Copy ``photos`` real Sketchy photos of ``cls`` with their sketches into ``dst`` as class
    folder ``folder``; returns the number of sketches copied."""
    copied = 0
    stems = sorted({p.stem.rpartition("-")[0] for p in (sketchy / "sketches" / cls).iterdir()})
    for stem in stems[:photos]:
        (dst / "photos" / folder).mkdir(parents=True, exist_ok=True)
        (dst / "sketches" / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(sketchy / "photos" / cls / f"{stem}.jpg", dst / "photos" / folder)
        for sketch in sorted((sketchy / "sketches" / cls).glob(f"{stem}-*.png")):
            shutil.copy(sketch, dst / "sketches" / folder)
            copied += 1
    return copied


# ---------------------------------------------------------------------------- class rules
def test_class_names_compare_normalised():
    assert (
        class_key("Hot air-balloon") == class_key("hot-air_balloon") == class_key("hotairballoon")
    )
    assert class_key(" Wine  Bottle ") == class_key("wine_bottle")
    assert class_key("hot dog") == class_key("hotdog") != class_key("hot")
    assert is_hidden_class("Rhinoceros") and is_hidden_class("sky scraper")
    assert is_hidden_class("Sea-Gull") and not is_hidden_class("bird")
    assert is_hidden_class("WINDMILL") and not is_hidden_class("dog")
    assert len(ZERO_SHOT_TEST_CLASSES) == 21 and len(UNSEEN_VALIDATION_CLASSES) == 20
    assert not {class_key(c) for c in ZERO_SHOT_TEST_CLASSES} & {
        class_key(c) for c in UNSEEN_VALIDATION_CLASSES
    }


def test_hidden_classes_reach_no_training_set(sketchy, quickdraw, tmp_path):
    """A main folder and an extra folder, each with a hidden class spelt its own way (real photos
    and sketches copied from the Sketchy data), and the real QuickDraw doodles: the training data
    holds nothing of the hidden classes, and everything of the others."""
    main, extra = tmp_path / "main", tmp_path / "extra"
    dog_sketches = real_class(sketchy, main, "dog", "dog")
    real_class(sketchy, main, "cat", "Rhinoceros")  # a hidden class's folder name, capitalised
    hot_air = real_class(sketchy, main, "hot-air_balloon", "hot-air_balloon")
    real_class(sketchy, extra, "horse", "WINDMILL")
    real_class(sketchy, extra, "tiger", "Sea_Gull")
    horse = real_class(sketchy, extra, "horse", "horse", photos=1)
    config = TrainConfig(split=None, extra_data=(str(extra),), doodles=str(quickdraw))

    data = training_dataset(config, main)

    assert data.classes == ("dog", "horse", "hot-air_balloon")
    assert not any(is_hidden_class(c) for c in data.classes)
    paths = [str(p.path) for p in data.photos] + [str(s.path) for s in data.sketches]
    for hidden in ("Rhinoceros", "WINDMILL", "Sea_Gull", "rhinoceros.ndjson"):
        assert not [p for p in paths if hidden in p]
    by_source = {
        name: sum(s.source == name for s in data.sketches) for name in ("", "extra", "quickdraw")
    }
    assert by_source[""] == dog_sketches + hot_air and by_source["extra"] == horse
    # QuickDraw's "hot air balloon" is Sketchy's "hot-air_balloon"; every drawing of the file
    doodles = [s for s in data.sketches if s.source == "quickdraw"]
    hab = sum(1 for _ in read_quickdraw(quickdraw / "hot_air_balloon.ndjson.gz"))
    assert sum(data.classes[s.label] == "hot-air_balloon" for s in doodles) == hab > 0
    assert {data.classes[s.label] for s in doodles} == set(data.classes)
    assert all(s.photo_key == "" for s in doodles)


def test_training_never_reads_hidden_doodles_but_evaluation_may(quickdraw):
    classes = ("Rhinoceros", "car_(sedan)", "teddy_bear")
    train_items = doodle_sketches(quickdraw, classes, 3, training=True)
    assert {classes[s.label] for s in train_items} == {"car_(sedan)", "teddy_bear"}
    assert len(train_items) == 6  # QuickDraw "car" and "teddy-bear" matched, 3 of each
    eval_items = doodle_sketches(quickdraw, classes, 3, training=False)
    assert {classes[s.label] for s in eval_items} == set(classes)


def test_quickdraw_words_map_onto_sketchy_classes(sketchy, quickdraw):
    files = quickdraw_files(quickdraw)
    classes = load_dataset(sketchy).classes
    drawn = {c for c in classes if class_key(c) in files}
    for odd in ("car_(sedan)", "crocodilian", "motorcycle", "hot-air_balloon", "hotdog"):
        assert odd in drawn
    assert "teddy_bear" in drawn and "wine_bottle" in drawn
    assert files[class_key("hotdog")].name == "hot_dog.ndjson.gz"
    assert len(drawn) == 82  # the other 22 Sketchy classes are not among QuickDraw's 345 words


def test_config_refuses_hidden_classes_and_unknown_sets():
    with pytest.raises(ConfigError, match="hidden zero-shot test class"):
        TrainConfig(classes=("dog", "Giraffe"))
    with pytest.raises(ConfigError, match="named set"):
        TrainConfig(hold_out="unseen21")
    with pytest.raises(ConfigError, match="same class"):
        TrainConfig(hold_out="unseen20", classes=("Wine Bottle",))
    config = TrainConfig(hold_out=["swan"], extra_data=["a", "b"], doodles_per_class=5)
    assert TrainConfig.from_dict(config.to_dict()) == config


# ---------------------------------------------------------------------------- unseen20 split
def test_unseen20_hold_out_is_class_disjoint_on_real_sketchy(sketchy):
    full = load_dataset(sketchy)
    data = training_dataset(TrainConfig(hold_out="unseen20"), sketchy)
    held = {class_key(c) for c in UNSEEN_VALIDATION_CLASSES}

    assert held <= {class_key(c) for c in full.classes}
    assert len(data.classes) == len(full.classes) - 20 == 84
    assert not {class_key(c) for c in data.classes} & held
    assert {data.classes[p.label] for p in data.photos} == set(data.classes)
    train_split = full.subset("train")
    kept = [p for p in train_split.photos if class_key(full.classes[p.label]) not in held]
    assert len(data.photos) == len(kept)  # the train split of the other 84 classes, whole
    assert len(data.sketches) == sum(
        class_key(full.classes[s.label]) not in held for s in train_split.sketches
    )
    with pytest.raises(ConfigError, match="in none of the training data"):
        training_dataset(TrainConfig(hold_out=("bananna",)), sketchy)


# ---------------------------------------------------------------------------- extra data
def test_pacs_brings_nothing_of_the_sketchy_test_split(sketchy, pacs):
    full = load_dataset(sketchy)
    test_photos = {k for k in full.splits["test"]}
    pacs_all = load_dataset(pacs, paired=False)
    overlap = [
        s
        for s in pacs_all.sketches
        if f"{pacs_all.classes[s.label]}/{s.path.stem.rpartition('-')[0]}" in test_photos
    ]
    assert overlap  # PACS's Sketchy part does draw test photos: the rule below has work to do

    data = training_dataset(TrainConfig(extra_data=(str(pacs),)), sketchy)
    from_pacs = [s for s in data.sketches if s.source == "pacs"]
    named = {f"{data.classes[s.label]}/{s.path.stem.rpartition('-')[0]}" for s in from_pacs}
    named |= {f"{data.classes[p.label]}/{p.path.stem}" for p in data.photos if p.source == "pacs"}
    assert not named & test_photos
    assert not {s.path.name for s in overlap} & {s.path.name for s in from_pacs}
    # nothing trained on twice: Sketchy's own training sketches are not added again from PACS
    main_names = {(data.classes[s.label], s.path.name) for s in data.sketches if not s.source}
    assert not main_names & {(data.classes[s.label], s.path.name) for s in from_pacs}
    # PACS adds its own classes, and its TU-Berlin sketches (drawn of no photo)
    assert {"house", "person"} <= set(data.classes)
    tu_berlin = [s for s in from_pacs if s.path.stem.isdigit()]
    assert tu_berlin and all(s.photo_key == "" for s in tu_berlin)
    assert len(data.classes) == 106


def test_extra_data_must_be_category_level(sketchy, shared_data):
    with pytest.raises(ConfigError, match="not category-level"):
        training_dataset(TrainConfig(extra_data=(str(shared_data / "shoes_v1"),)), sketchy)
    with pytest.raises(ConfigError, match="fine-grained"):
        training_dataset(TrainConfig(hold_out="unseen20"), shared_data / "shoes_v1")


def test_paired_is_required_unless_asked(pacs):
    with pytest.raises(DatasetError, match="with no photo"):
        load_dataset(pacs)
    assert len(load_dataset(pacs, paired=False).sketches) == 3176


# ---------------------------------------------------------------------------- arrays, training
def test_doodles_are_drawn_by_the_engine_and_have_no_photo(sketchy, quickdraw):
    config = TrainConfig(
        classes=("apple", "axe"), split=None, doodles=str(quickdraw), doodles_per_class=4
    )
    dataset = training_dataset(config, sketchy)
    data = drain(prepare_arrays(dataset, 64, 96))
    doodle = data.sketch_source == "quickdraw"
    assert doodle.sum() == 8 and (data.sketch_source == "").sum() == 50
    assert (data.sketch_photo[doodle] == -1).all() and (data.sketch_photo[~doodle] >= 0).all()
    first = int(np.flatnonzero(doodle)[0])
    assert np.array_equal(data.sketches[first], read_strokes(dataset.sketches[first], 96))
    assert (data.sketches[doodle] < 128).any(axis=(1, 2)).all()  # ink on every one
    # triplet sampling leaves out the sketches with no photo of their own
    rows = triplets(data.sketch_photo, len(data.photos), torch.Generator().manual_seed(0))
    assert len(rows) == (~doodle).sum() and all(p >= 0 for _, p, _ in rows)


def test_a_short_run_trains_on_every_source(sketchy, pacs, quickdraw, tmp_path):
    config = TrainConfig(
        model={"bits": 32, "image_size": 96, "pretrained": False},
        epochs=1,
        batch_size=4,
        per_class=2,
        max_steps_per_epoch=2,
        classes=("dog", "horse"),
        extra_data=(str(pacs),),
        doodles=str(quickdraw),
        doodles_per_class=5,
        seed=0,
    )
    result = drain(train(config, sketchy, tmp_path / "m.safetensors"))
    assert result.global_step == 2 and not result.cancelled
    from engine.models import read_checkpoint_info

    sources = read_checkpoint_info(result.checkpoint).metadata["data"]["sources"]
    assert sources["quickdraw"]["sketches"] == 10 and sources["pacs"]["sketches"] > 500
