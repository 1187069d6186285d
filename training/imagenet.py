"""Which of ImageNet's 1000 classes a training class is, by name.

The pretrained photo encoder's classifier (``engine.models.backbones.imagenet_classifier``) knows
1000 ImageNet classes; a sketch of one of them can be trained against that classifier, which
ties the sketch space to ImageNet's class directions (``training.methods.anchor``). The names
come from timm's own copy of the ImageNet synset lemmas (``timm/data/_info``), matched with
``training.data.class_key`` against every lemma of a synset (``"sax, saxophone"`` matches
saxophone). A lemma that merely shares a word is not a match; where one of our names is a lemma
of two synsets the first wins, except where ``_NOT_THIS`` names the wrong one. The hidden
zero-shot test classes are never given an ImageNet class, so no training reaches them this way.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from training.data import class_key, is_hidden_class

log = logging.getLogger(__name__)

_NOT_THIS = frozenset({"harmonica"})  # "harp" is a lemma of the harmonica synset too


@functools.cache
def _lemma_index() -> dict[str, int]:
    import timm

    info = Path(timm.__file__).parent / "data" / "_info"
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(
        line.split("\t", 1)
        for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines()
        if "\t" in line
    )
    index: dict[str, int] = {}
    for i, synset in enumerate(synsets):
        names = [n.strip() for n in lemmas.get(synset, "").split(",") if n.strip()]
        if not names or names[0] in _NOT_THIS:
            continue
        for name in names:
            index.setdefault(class_key(name), i)
    return index


def imagenet_index(name: str) -> int:
    """The ImageNet class (0..999) named ``name``, or -1 (none, or a hidden test class)."""
    if is_hidden_class(name):
        return -1
    return _lemma_index().get(class_key(name), -1)
