"""Training and evaluation data sets: the two folder layouts, validated before any work starts.

Layouts (see ../shared/data/README.md; a user's own folder in either layout works the same):
- ``category``: ``photos/<class>/<photo>.<ext>``, ``sketches/<class>/<photo>-<k>.png`` (or
  ``<photo>.png``), optional ``split.json`` of ``"<class>/<photo>"`` keys. A hit is a photo of
  the query's class.
- ``fine_grained``: ``photos/<id>.<ext>``, ``sketches/<id>[-<k>].png``, optional ``edges/<id>.png``,
  ``split.json`` of ids and ``triplets.json`` ``{sketch id: [[closer, farther], ...]}``. Every
  photo is its own class; a hit is the sketch's own photo.

Choices: a photo without a sketch is allowed (it is still gallery and, category-level, a training
photo of its class); a sketch without a photo, an empty class folder, a split or triplet naming
missing items, and a folder that fits neither layout are refused with a ``DatasetError`` naming
the files. Keys are sorted, so numbering (labels, photo ids for tie-breaking) is reproducible.
``load_dataset(root, paired=False)`` also takes category sketches drawn of no photo (their
``photo_key`` is ""): data sets gathered by class, such as PACS's TU-Berlin sketches.

Class rules (issue 16), by normalised name (``class_key``: case, spaces, underscores and hyphens
do not count, so QuickDraw's "wine bottle" is Sketchy's "wine_bottle", "hot dog" its "hotdog"):
- ``ZERO_SHOT_TEST_CLASSES``: the 21 classes of the standard zero-shot Sketchy split, kept for a
  hidden test. Training never loads them from any source (``without_classes`` drops them and logs
  how many items went); evaluation may, so whoever has that data can measure on it.
- ``UNSEEN_VALIDATION_CLASSES`` (the named set "unseen20"): 20 of the 104 classes here, held out
  of training (``TrainConfig.hold_out``) and evaluated alone (``EvalConfig.protocol``), a
  class-disjoint validation that can be run on the shared data.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import DatasetError

log = logging.getLogger(__name__)

CATEGORY = "category"
FINE_GRAINED = "fine_grained"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_SHOWN = 5  # how many offending files an error names

# fmt: off
ZERO_SHOT_TEST_CLASSES = frozenset((
    "bat", "cabin", "cow", "dolphin", "door", "giraffe", "helicopter", "mouse", "pear", "raccoon",
    "rhinoceros", "saw", "scissors", "seagull", "skyscraper", "songbird", "sword", "tree",
    "wheelchair", "windmill", "window",
))
UNSEEN_VALIDATION_CLASSES = (
    "banana", "bear", "candle", "castle", "church", "cup", "duck", "frog", "jellyfish",
    "kangaroo", "knife", "motorcycle", "pickup_truck", "pretzel", "sailboat", "saxophone",
    "spider", "swan", "trumpet", "wine_bottle",
)
# fmt: on
NAMED_CLASS_SETS = {"unseen20": UNSEEN_VALIDATION_CLASSES}


def class_key(name: str) -> str:
    """A class name as compared across data sets: lower case, without spaces, underscores and
    hyphens ("Hot air-balloon", "hot-air_balloon" -> "hotairballoon"; "sea gull" is "seagull").
    """
    return re.sub(r"[\s_\-]+", "", name.lower())


_HIDDEN_KEYS = frozenset(class_key(c) for c in ZERO_SHOT_TEST_CLASSES)


def is_hidden_class(name: str) -> bool:
    """Whether ``name`` is one of the 21 zero-shot test classes no training may see."""
    return class_key(name) in _HIDDEN_KEYS


def class_set(names: str | Iterable[str]) -> tuple[str, ...]:
    """A named class set ("unseen20") or the names themselves, as a tuple."""
    if isinstance(names, str):
        if names not in NAMED_CLASS_SETS:
            raise DatasetError(
                f"Unknown class set '{names}'; named sets: {', '.join(NAMED_CLASS_SETS)}, "
                "or give the class names."
            )
        return NAMED_CLASS_SETS[names]
    return tuple(names)


@dataclass(frozen=True)
class PhotoItem:
    key: str  # "<class>/<photo>" or "<id>"; "<source>:<class>/<photo>" when merged from another
    path: Path
    label: int
    source: str = ""  # "" for the main data set; else the folder or "quickdraw" it came from


@dataclass(frozen=True)
class SketchItem:
    key: str  # "<class>/<file stem>" or "<file stem>"
    path: Path  # the image file, or for a drawing given as strokes the file they came from
    photo_key: str  # "" when it was drawn of no photo here
    label: int
    source: str = ""
    strokes: tuple[Any, ...] | None = None  # engine.sketch.Stroke objects, rasterised on decode


@dataclass(frozen=True)
class SketchDataset:
    """A validated data set folder: photos and sketches with class labels and instance links."""

    root: Path
    layout: str
    classes: tuple[str, ...]
    photos: tuple[PhotoItem, ...]
    sketches: tuple[SketchItem, ...]
    splits: Mapping[str, frozenset[str]] = field(default_factory=dict)
    triplets: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    edges: Mapping[str, Path] = field(default_factory=dict)
    split: str | None = None  # the split this view was restricted to, if any

    def subset(self, split: str | None) -> SketchDataset:
        """The photos named by ``split`` and the sketches of those photos (None: everything)."""
        if split is None:
            return self
        if split not in self.splits:
            have = ", ".join(sorted(self.splits)) or "none (no split.json)"
            raise DatasetError(f"{self.root} has no '{split}' split; its splits: {have}.")
        keep = self.splits[split]
        return replace(
            self,
            photos=tuple(p for p in self.photos if p.key in keep),
            sketches=tuple(s for s in self.sketches if s.photo_key in keep),
            split=split,
        )

    def restrict_classes(self, names: Iterable[str]) -> SketchDataset:
        """Only the named classes (category layout), relabelled 0..n-1 in sorted order."""
        wanted = sorted(set(names))
        unknown = [n for n in wanted if n not in self.classes]
        if unknown:
            raise DatasetError(f"{self.root} has no class(es) {', '.join(unknown[:_SHOWN])}.")
        old = {name: i for i, name in enumerate(self.classes)}
        new = {old[name]: i for i, name in enumerate(wanted)}
        return replace(
            self,
            classes=tuple(wanted),
            photos=tuple(replace(p, label=new[p.label]) for p in self.photos if p.label in new),
            sketches=tuple(replace(s, label=new[s.label]) for s in self.sketches if s.label in new),
        )

    def without_classes(self, names: Iterable[str], why: str) -> SketchDataset:
        """Everything but the classes named (compared by ``class_key``), relabelled 0..n-1;
        logs how many classes, photos and sketches went, and ``why``."""
        drop = {class_key(n) for n in names}
        gone = [c for c in self.classes if class_key(c) in drop]
        if not gone or self.layout != CATEGORY:
            return self
        kept = self.restrict_classes(c for c in self.classes if class_key(c) not in drop)
        log.info(
            "%s: dropped %d class(es) (%s), %d photos and %d sketches: %s",
            self.root,
            len(gone),
            ", ".join(gone),
            len(self.photos) - len(kept.photos),
            len(self.sketches) - len(kept.sketches),
            why,
        )
        return kept

    def without_hidden_classes(self) -> SketchDataset:
        """This data set without the zero-shot test classes: every training source goes
        through here."""
        return self.without_classes(ZERO_SHOT_TEST_CLASSES, "hidden zero-shot test classes")

    def summary(self) -> dict[str, Any]:
        """What a checkpoint records about the data it was trained on."""
        out = {
            "root": str(self.root),
            "layout": self.layout,
            "split": self.split,
            "classes": len(self.classes),
            "photos": len(self.photos),
            "sketches": len(self.sketches),
        }
        sources = sorted({s.source for s in self.sketches} | {p.source for p in self.photos})
        if sources != [""]:
            out["sources"] = {
                name or "main": {
                    "photos": sum(p.source == name for p in self.photos),
                    "sketches": sum(s.source == name for s in self.sketches),
                }
                for name in sources
            }
        return out


def data_layout(root: str | Path) -> str | None:
    """The layout a data set folder has, as ``load_dataset`` decides it (class folders under
    photos/: category level; else fine-grained), or None where it has no photos/ folder yet
    (``load_dataset`` says what is wrong)."""
    photos_dir = Path(root) / "photos"
    try:
        return CATEGORY if any(p.is_dir() for p in photos_dir.iterdir()) else FINE_GRAINED
    except OSError:
        return None


def load_dataset(root: str | Path, *, paired: bool = True) -> SketchDataset:
    """Read and validate a data set folder; raises DatasetError naming what is wrong.

    ``paired`` False (category layout): a sketch whose name names no photo is kept, drawn of
    no photo (``photo_key`` ""), instead of refused."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"The data set folder {root} does not exist or is not a folder.")
    photos_dir, sketches_dir = root / "photos", root / "sketches"
    if not photos_dir.is_dir() or not sketches_dir.is_dir():
        raise DatasetError(
            f"{root} fits no data set layout: it needs a photos/ and a sketches/ folder, either "
            "with one sub-folder per class (photos/<class>/<photo>.jpg, "
            "sketches/<class>/<photo>-1.png) or flat (photos/<id>.jpg, sketches/<id>.png)."
        )
    class_dirs = sorted(p for p in photos_dir.iterdir() if p.is_dir())
    flat_photos = _images(photos_dir)
    if class_dirs and flat_photos:
        raise DatasetError(
            f"{photos_dir} mixes class folders and loose photos (e.g. {flat_photos[0].name}); "
            "use either photos/<class>/ folders or photos directly in photos/, not both."
        )
    if class_dirs:
        dataset = _load_category(root, class_dirs, paired)
    elif flat_photos:
        dataset = _load_fine_grained(root, flat_photos)
    else:
        raise DatasetError(f"{photos_dir} holds no photos ({', '.join(sorted(IMAGE_EXTENSIONS))}).")
    log.info(
        "Data set %s: %s, %d classes, %d photos, %d sketches, splits %s",
        root,
        dataset.layout,
        len(dataset.classes),
        len(dataset.photos),
        len(dataset.sketches),
        sorted(dataset.splits),
    )
    return dataset


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _fail(what: str, items: list[str], advice: str) -> None:
    if items:
        shown = ", ".join(items[:_SHOWN]) + (
            f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
        )
        raise DatasetError(f"{len(items)} {what}: {shown}. {advice}")


def _photo_of(stem: str, known: Mapping[str, Any], prefix: str = "") -> str | None:
    """The photo a sketch file stem names: '<photo>' itself, or '<photo>-<k>'."""
    if prefix + stem in known:
        return prefix + stem
    base, sep, k = stem.rpartition("-")
    if sep and k.isdigit() and prefix + base in known:
        return prefix + base
    return None


def _load_category(root: Path, class_dirs: list[Path], paired: bool = True) -> SketchDataset:
    classes = tuple(d.name for d in class_dirs)
    label = {name: i for i, name in enumerate(classes)}
    photos: dict[str, PhotoItem] = {}
    empty = []
    for d in class_dirs:
        images = _images(d)
        if not images:
            empty.append(f"photos/{d.name}/")
        for path in images:
            key = f"{d.name}/{path.stem}"
            photos[key] = PhotoItem(key, path, label[d.name])
    _fail("class folder(s) without photos", empty, "Add photos or remove the empty folders.")
    sketches, orphans, no_sketch_class = [], [], []
    sketch_root = root / "sketches"
    for d in sorted(p for p in sketch_root.iterdir() if p.is_dir()):
        files = _images(d)
        if d.name not in label:
            orphans.extend(f"sketches/{d.name}/{f.name}" for f in files)
            continue
        for path in files:
            photo = _photo_of(path.stem, photos, prefix=f"{d.name}/")
            if photo is None and not paired:
                photo = ""
            if photo is None:
                orphans.append(f"sketches/{d.name}/{path.name}")
            else:
                sketches.append(SketchItem(f"{d.name}/{path.stem}", path, photo, label[d.name]))
    _fail(
        "sketch(es) with no photo",
        orphans,
        "Name each sketch after its photo (sketches/<class>/<photo>-<k>.png) in a class that "
        "has a photos/<class>/ folder, or remove it.",
    )
    with_sketch = {s.label for s in sketches}
    no_sketch_class = [f"sketches/{c}/" for c in classes if label[c] not in with_sketch]
    _fail("class(es) without any sketch", no_sketch_class, "Add sketches or remove the class.")
    splits = _read_splits(root, photos)
    return SketchDataset(
        root, CATEGORY, classes, tuple(photos.values()), tuple(sketches), splits=splits
    )


def _load_fine_grained(root: Path, photo_paths: list[Path]) -> SketchDataset:
    keys = [p.stem for p in photo_paths]
    label = {k: i for i, k in enumerate(keys)}
    photos = {k: PhotoItem(k, p, label[k]) for k, p in zip(keys, photo_paths, strict=True)}
    sketch_files = _images(root / "sketches")
    sketches, orphans = [], []
    for path in sketch_files:
        photo = _photo_of(path.stem, photos)
        if photo is None:
            orphans.append(f"sketches/{path.name}")
        else:
            sketches.append(SketchItem(path.stem, path, photo, label[photo]))
    _fail(
        "sketch(es) with no photo", orphans, "Name each sketch after its photo: sketches/<id>.png."
    )
    if not sketches:
        raise DatasetError(f"{root / 'sketches'} holds no sketches.")
    edges = {}
    if (root / "edges").is_dir():
        edges = {p.stem: p for p in _images(root / "edges") if p.stem in photos}
    splits = _read_splits(root, photos)
    triplets = _read_triplets(root, photos, {s.key for s in sketches})
    return SketchDataset(
        root,
        FINE_GRAINED,
        tuple(keys),
        tuple(photos.values()),
        tuple(sketches),
        splits=splits,
        triplets=triplets,
        edges=edges,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path} is not readable JSON ({exc}); fix or remove it.") from exc


def _read_splits(root: Path, photos: Mapping[str, PhotoItem]) -> dict[str, frozenset[str]]:
    path = root / "split.json"
    if not path.is_file():
        return {}
    raw = _read_json(path)
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise DatasetError(f'{path} must be a JSON object of lists, e.g. {{"train": [...]}}.')
    splits = {}
    for name, entries in raw.items():
        keys = [str(e) for e in entries]
        missing = [f"{name}: {k}" for k in keys if k not in photos]
        _fail(
            f"entr(ies) of {path.name} naming no photo",
            missing,
            "Each entry must name a photo as '<class>/<photo>' (or '<id>' when flat), "
            "without extension.",
        )
        splits[name] = frozenset(keys)
    return splits


def _read_triplets(
    root: Path, photos: Mapping[str, PhotoItem], sketch_keys: set[str]
) -> dict[str, tuple[tuple[str, str], ...]]:
    path = root / "triplets.json"
    if not path.is_file():
        return {}
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise DatasetError(f"{path} must map sketch ids to [[closer, farther], ...] photo pairs.")
    triplets, bad = {}, []
    for sketch, pairs in raw.items():
        if sketch not in sketch_keys:
            bad.append(f"sketch {sketch}")
            continue
        clean = []
        for pair in pairs:
            if len(pair) != 2 or any(str(p) not in photos for p in pair):
                bad.append(f"{sketch}: {pair}")
            else:
                clean.append((str(pair[0]), str(pair[1])))
        triplets[sketch] = tuple(clean)
    _fail(f"entr(ies) of {path.name} naming missing files", bad, "Fix or remove those entries.")
    return triplets
