"""A photo as the query ("more like this photo"): encoded by the model's photo encoder, as the
indexer encodes the library, never as a sketch (before, a pasted photo was normalised as a
sketch and found nothing of its kind)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from engine.errors import ImageLoadError
from engine.indexer import index_library
from engine.library import Library
from engine.searcher import Searcher
from engine.store import default_checkpoint, load_model

CLASSES = ("airplane", "apple", "bicycle", "cup", "guitar", "hat")
PER_CLASS = 6


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, shared_data):
    """36 real Sketchy photos indexed with the shipped model, and one held-out photo a class."""
    if default_checkpoint() is None:
        pytest.skip("needs the shipped default model (assets/models/default.safetensors)")
    root = tmp_path_factory.mktemp("photo-query")
    held_out = []
    for cls in CLASSES:
        photos = sorted((shared_data / "sketchy" / "photos" / cls).glob("*.jpg"))
        (root / "photos" / cls).mkdir(parents=True)
        for photo in photos[:PER_CLASS]:
            shutil.copy(photo, root / "photos" / cls / photo.name)
        held_out.append((cls, photos[PER_CLASS]))
    model = load_model(None, device="cpu")
    library = Library(root / "library")
    library.add_root(root / "photos")
    for _ in index_library(library, model):
        pass
    yield Searcher(library, model), root / "photos", held_out
    library.close()


def test_a_library_photo_finds_itself_first(indexed):
    searcher, photos, _ = indexed
    for cls in CLASSES:
        photo = sorted((photos / cls).glob("*.jpg"))[2]
        response = searcher.search_photo(photo, k=5)
        assert response.results[0].path == photo and response.results[0].distance == 0
        assert {"normalize", "encode", "search", "lookup", "total"} <= set(response.timings_ms)


def test_a_photo_query_finds_its_kind_where_the_sketch_path_did_not(indexed):
    searcher, _, held_out = indexed
    as_photo = as_sketch = 0
    for cls, photo in held_out:
        pixels = np.asarray(Image.open(photo).convert("RGB"))  # as pasted: pixels, no file
        as_photo += sum(f"/{cls}/" in str(r.path) for r in searcher.search_photo(pixels, 5).results)
        grey = np.asarray(Image.open(photo).convert("L"))  # what the app searched before
        as_sketch += sum(f"/{cls}/" in str(r.path) for r in searcher.search(grey, 5).results)
    chance = 5 * len(held_out) / len(CLASSES)
    assert as_photo > 2 * chance, (as_photo, as_sketch)
    assert as_photo > as_sketch, (as_photo, as_sketch)


def test_a_bad_photo_is_a_named_error(indexed):
    searcher, _, _ = indexed
    with pytest.raises(ImageLoadError):
        searcher.search_photo(np.zeros((4, 4, 3), np.float32))
