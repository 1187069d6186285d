"""The data a model trains on: the main data set folder, more category-level folders, and QuickDraw
doodles, with the class rules of ``training.data`` applied to every one of them.

``training_dataset(config, data_dir)`` is what the trainer trains on:
1. the main folder (``data_dir``), restricted to ``config.classes`` if given, without the hidden
   zero-shot test classes (``ZERO_SHOT_TEST_CLASSES``) and the ``config.hold_out`` classes, then
   the ``config.split`` view (Sketchy: its "train" split);
2. each ``config.extra_data`` folder (category layout, sketches drawn of no photo allowed: PACS),
   under the same class rules, merged by class name (``class_key``; a new class is added). An
   extra item that names a photo of the main folder is dropped: one the training view left out
   (the main data's test split) would leak the test into training; one it kept is a duplicate.
   PACS's Sketchy part names the same photos (sketches ``<photo_id>-<k>``, photos
   ``<photo_id>``, the same class folders), so this keeps Sketchy's test split out of training;
3. ``config.doodles``, a QuickDraw folder (``<word>.ndjson.gz``): the drawings of every class of
   the merged data that QuickDraw has (``quickdraw_files``: normalised names plus
   ``QUICKDRAW_ALIASES``), as sketches of their class drawn of no photo, their strokes kept to
   be rasterised through the engine's own stroke path when the arrays are prepared; at most
   ``config.doodles_per_class`` of each, in file order.

Merged items' keys are prefixed with their source (``"pacs:dog/n02103406_1234"``,
``"quickdraw:dog/<key_id>"``), so keys stay unique; ``SketchItem.source`` says where each came
from, and ``PreparedData.sketch_source`` carries it into the arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from engine.errors import ConfigError, DatasetError
from engine.sketch import read_quickdraw
from training.config import TrainConfig
from training.data import (
    CATEGORY,
    SketchDataset,
    SketchItem,
    class_key,
    class_set,
    is_hidden_class,
    load_dataset,
)

log = logging.getLogger(__name__)

QUICKDRAW = "quickdraw"
QUICKDRAW_SUFFIXES = (".ndjson.gz", ".ndjson")
QUICKDRAW_ALIASES = {  # QuickDraw word -> Sketchy class, where normalising the names is not enough
    "car": "car_(sedan)",
    "crocodile": "crocodilian",
    "motorbike": "motorcycle",
    "tennis racquet": "racket",  # Sketchy's rackets are mostly tennis rackets
}

ALIASES = {class_key(word): class_key(name) for word, name in QUICKDRAW_ALIASES.items()}


def training_dataset(config: TrainConfig, data_dir: str | Path) -> SketchDataset:
    """The training data of ``config`` (see the module docstring); raises DatasetError or
    ConfigError naming what is wrong before anything is decoded."""
    main = load_dataset(data_dir)
    if main.layout != CATEGORY and (config.hold_out or config.extra_data or config.doodles):
        raise ConfigError(
            f"{data_dir} is a fine-grained data set: held-out classes, extra data and doodles "
            "are for category-level data (photos/<class>/, sketches/<class>/)."
        )
    extras = [load_dataset(folder, paired=False) for folder in config.extra_data]
    for folder, extra in zip(config.extra_data, extras, strict=True):
        if extra.layout != CATEGORY:
            raise ConfigError(f"The extra data {folder} is not category-level (photos/<class>/).")
    hold_out = class_set(config.hold_out) if config.hold_out else ()
    known = {class_key(c) for d in (main, *extras) for c in d.classes}
    unknown = [n for n in hold_out if class_key(n) not in known and not is_hidden_class(n)]
    if unknown:
        raise ConfigError(
            f"The hold-out class(es) {', '.join(unknown[:5])} are in none of the training data "
            f"({', '.join(str(d.root) for d in (main, *extras))}); check the names."
        )
    if config.classes:
        main = main.restrict_classes(config.classes)
    main = _class_rules(main, hold_out)
    view = main.subset(config.split)
    for extra in extras:
        if config.classes:
            extra = extra.restrict_classes(_same_classes(extra.classes, config.classes))
        view = merge(view, _without_main_items(_class_rules(extra, hold_out), main, view))
    if config.doodles is not None:
        if config.doodle_classes == "imagenet" and not config.classes:
            view = with_imagenet_doodle_classes(view, config.doodles, hold_out)
        view = with_doodles(view, config.doodles, config.doodles_per_class)
    log.info("Training data: %s", view.summary())
    return view


def trained_classes(dataset: SketchDataset, training: dict) -> SketchDataset:
    """``dataset`` restricted to the classes a checkpoint's training could see (``training``:
    its stored training config): the classes it named, if any, less its held-out ones. What is
    fitted after training (``training.fit_codes``) must not see a class the validation
    protocol holds out. The hidden zero-shot classes are dropped wherever arrays are fitted on."""
    if dataset.layout != CATEGORY:
        return dataset
    classes = training.get("classes") or ()
    if classes:
        dataset = dataset.restrict_classes(_same_classes(dataset.classes, classes))
    hold_out = training.get("hold_out") or ()
    if hold_out:
        dataset = dataset.without_classes(class_set(hold_out), "held out of the model's training")
    return dataset


def _class_rules(dataset: SketchDataset, hold_out: Sequence[str]) -> SketchDataset:
    dataset = dataset.without_hidden_classes()
    return dataset.without_classes(hold_out, "held out of training") if hold_out else dataset


def _same_classes(have: Iterable[str], names: Iterable[str]) -> list[str]:
    wanted = {class_key(n) for n in names}
    return [c for c in have if class_key(c) in wanted]


def _named_photo(sketch: SketchItem) -> str:
    """The photo a sketch's file name names ('<photo>-<k>' -> '<photo>'), whether or not that
    photo is in the sketch's own folder."""
    base, sep, k = sketch.path.stem.rpartition("-")
    return base if sep and k.isdigit() else sketch.path.stem


def _without_main_items(
    extra: SketchDataset, main: SketchDataset, view: SketchDataset
) -> SketchDataset:
    """``extra`` without the items that name a photo of ``main`` (see the module docstring)."""
    spelling = {class_key(c): c for c in main.classes}

    def main_key(label: int, stem: str) -> str:
        cls = extra.classes[label]
        return f"{spelling.get(class_key(cls), cls)}/{stem}"

    in_main = {p.key for p in main.photos}
    in_view = {p.key for p in view.photos}
    trained = {s.key for s in view.sketches}
    photos, sketches, leaks, duplicates = [], [], 0, 0
    for p in extra.photos:
        key = main_key(p.label, p.path.stem)
        if key not in in_main:
            photos.append(p)
        elif key in in_view:
            duplicates += 1
        else:
            leaks += 1
    kept_photos = {p.key for p in photos}
    for s in extra.sketches:
        photo = main_key(s.label, _named_photo(s))
        if photo in in_main and photo not in in_view:
            leaks += 1
        elif main_key(s.label, s.path.stem) in trained:
            duplicates += 1
        else:
            sketches.append(s if s.photo_key in kept_photos else replace(s, photo_key=""))
    if leaks or duplicates:
        log.info(
            "%s: dropped %d item(s) naming photos of %s that its training view leaves out (its "
            "test split) and %d duplicate(s) of items it trains on",
            extra.root,
            leaks,
            main.root,
            duplicates,
        )
    return replace(extra, photos=tuple(photos), sketches=tuple(sketches))


def merge(main: SketchDataset, extra: SketchDataset) -> SketchDataset:
    """``main`` and ``extra`` as one category-level data set: classes matched by ``class_key``
    (``main``'s spelling kept, new classes added), all relabelled in sorted order, ``extra``'s
    keys prefixed with its source name (its folder's name)."""
    source = extra.root.name
    spelling = {class_key(c): c for c in main.classes}
    extra_names = [spelling.get(class_key(c), c) for c in extra.classes]
    classes = tuple(sorted(set(main.classes) | set(extra_names)))
    label = {c: i for i, c in enumerate(classes)}
    relabel = {i: label[c] for i, c in enumerate(main.classes)}
    relabel_extra = {i: label[c] for i, c in enumerate(extra_names)}

    def prefixed(key: str) -> str:
        return f"{source}:{key}" if key else ""

    photos = [replace(p, label=relabel[p.label]) for p in main.photos]
    photos += [
        replace(p, key=prefixed(p.key), label=relabel_extra[p.label], source=source)
        for p in extra.photos
    ]
    sketches = [replace(s, label=relabel[s.label]) for s in main.sketches]
    sketches += [
        replace(
            s,
            key=prefixed(s.key),
            photo_key=prefixed(s.photo_key),
            label=relabel_extra[s.label],
            source=source,
        )
        for s in extra.sketches
    ]
    return replace(main, classes=classes, photos=tuple(photos), sketches=tuple(sketches))


def quickdraw_files(folder: str | Path) -> dict[str, Path]:
    """``class_key`` of each word's class name (Sketchy's where ``QUICKDRAW_ALIASES`` says) ->
    the QuickDraw file of that word, for every ``<word>.ndjson(.gz)`` in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"The QuickDraw folder {folder} does not exist or is not a folder.")
    files = {}
    for path in sorted(folder.iterdir()):
        suffix = next((x for x in QUICKDRAW_SUFFIXES if path.name.endswith(x)), None)
        if suffix is None or not path.is_file():
            continue
        word = class_key(path.name[: -len(suffix)])
        files[ALIASES.get(word, word)] = path
    if not files:
        raise DatasetError(f"{folder} holds no QuickDraw files (<word>.ndjson.gz).")
    return files


def doodle_sketches(
    folder: str | Path,
    classes: Sequence[str],
    per_class: int | None = None,
    *,
    training: bool,
) -> list[SketchItem]:
    """QuickDraw drawings of ``classes`` (labelled by their index there) as sketches drawn of no
    photo, at most ``per_class`` of each in file order. Drawings without ink are skipped. For
    ``training``, a hidden zero-shot test class is never read (its drawings are counted in the
    log)."""
    files = quickdraw_files(folder)
    items: list[SketchItem] = []
    hidden, blank = 0, 0
    for label, name in enumerate(classes):
        path = files.get(class_key(name))
        if path is None:
            continue
        if training and is_hidden_class(name):
            hidden += sum(1 for _ in read_quickdraw(path, per_class))
            continue
        for drawing in read_quickdraw(path, per_class):
            if not any(not s.eraser and s.points for s in drawing.strokes):
                blank += 1
                continue
            key = f"{QUICKDRAW}:{name}/{drawing.key_id}"
            items.append(SketchItem(key, path, "", label, QUICKDRAW, drawing.strokes))
    if hidden:
        log.info(
            "QuickDraw %s: dropped %d drawing(s) of hidden zero-shot test classes", folder, hidden
        )
    if blank:
        log.warning("QuickDraw %s: skipped %d drawing(s) without ink", folder, blank)
    return items


def with_imagenet_doodle_classes(
    dataset: SketchDataset, folder: str | Path, hold_out: Sequence[str] = ()
) -> SketchDataset:
    """``dataset`` with a class (no photos, no sketches yet) for every QuickDraw word of
    ``folder`` that the data lacks and ImageNet has (``training.imagenet``), except hidden and
    held-out classes; ``with_doodles`` then adds their drawings."""
    from training.imagenet import imagenet_index

    have = {class_key(c) for c in dataset.classes}
    held = {class_key(c) for c in hold_out}
    new = []
    for key, path in quickdraw_files(folder).items():
        name = _quickdraw_word(path).replace(" ", "_")
        if key in have or key in held or is_hidden_class(name) or imagenet_index(name) < 0:
            continue
        new.append(name)
    if not new:
        return dataset
    classes = tuple(sorted((*dataset.classes, *new)))
    label = {c: i for i, c in enumerate(classes)}
    relabel = [label[c] for c in dataset.classes]
    log.info("QuickDraw %s: %d ImageNet class(es) without photos added", folder, len(new))
    return replace(
        dataset,
        classes=classes,
        photos=tuple(replace(p, label=relabel[p.label]) for p in dataset.photos),
        sketches=tuple(replace(s, label=relabel[s.label]) for s in dataset.sketches),
    )


def _quickdraw_word(path: Path) -> str:
    name = path.name
    suffix = next(x for x in QUICKDRAW_SUFFIXES if name.endswith(x))
    return name[: -len(suffix)]


def with_doodles(
    dataset: SketchDataset, folder: str | Path, per_class: int | None = None
) -> SketchDataset:
    """``dataset`` (a training view) with the QuickDraw drawings of its classes added as
    sketches of their class."""
    doodles = doodle_sketches(folder, dataset.classes, per_class, training=True)
    drawn = sorted({dataset.classes[s.label] for s in doodles})
    log.info(
        "QuickDraw %s: %d drawing(s) of %d of the %d training classes (%s)",
        folder,
        len(doodles),
        len(drawn),
        len(dataset.classes),
        ", ".join(drawn),
    )
    return replace(dataset, sketches=dataset.sketches + tuple(doodles))
