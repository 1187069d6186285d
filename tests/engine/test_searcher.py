"""The searcher: every query form takes the one sketch path; searching while indexing is safe."""

import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from engine.errors import SketchError
from engine.indexer import index_library
from engine.library import Library
from engine.models import model_id
from engine.searcher import Searcher
from engine.sketch import read_quickdraw, save_strokes
from engine.store import create_fresh


@pytest.fixture(scope="module")
def model():
    return create_fresh("baseline", bits=64, image_size=96)


@pytest.fixture
def library(tmp_path, shared_data):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((shared_data / "sketchy" / "photos").glob("*/*.jpg"))[::100][:26]:
        shutil.copy(p, photos / p.name)
    lib = Library(tmp_path / "lib")
    lib.add_root(photos)
    return lib


def test_every_query_form_gives_the_same_ranking(library, model, shared_data, tmp_path):
    for _ in index_library(library, model):
        pass
    searcher = Searcher(library, model)
    assert searcher.size == 26
    strokes = next(read_quickdraw(shared_data / "quickdraw" / "cup.ndjson.gz", limit=1)).strokes
    by_strokes = searcher.search(strokes, k=10)
    by_file = searcher.search(save_strokes(tmp_path / "q.json", strokes), k=10)
    assert [r.path for r in by_strokes.results] == [r.path for r in by_file.results]
    png = shared_data / "sketchy" / "sketches" / "cup"
    sketch_png = sorted(png.glob("*.png"))[0]
    by_path = searcher.search(sketch_png, k=10)
    by_pil = searcher.search(Image.open(sketch_png), k=10)
    by_array = searcher.search(np.asarray(Image.open(sketch_png).convert("L")), k=10)
    assert [r.photo_id for r in by_path.results] == [r.photo_id for r in by_pil.results]
    assert [r.photo_id for r in by_path.results] == [r.photo_id for r in by_array.results]
    assert [r.rank for r in by_path.results] == list(range(1, 11))
    assert by_path.model_id == model_id(model) and by_path.indexed == 26


def test_blank_sketch_is_a_clear_error(library, model):
    searcher = Searcher(library, model)
    with pytest.raises(SketchError, match="draw something"):
        searcher.search(np.full((100, 100), 255, np.uint8))


def test_search_from_a_thread_while_indexing(library, model, shared_data):
    model.train()  # as a model fresh from training arrives: the searcher must pin eval mode,
    searcher = Searcher(library, model)  # or BatchNorm would train on (and fail at) 1 sketch
    assert not model.training
    sketch = sorted((shared_data / "sketchy" / "sketches" / "cup").glob("*.png"))[0]
    errors: list[BaseException] = []
    sizes: list[int] = []
    done = threading.Event()

    def search_loop():
        while not done.is_set():
            try:
                searcher.refresh()
                sizes.append(len(searcher.search(sketch, k=5).results))
            except BaseException as exc:
                errors.append(exc)
                return

    worker = threading.Thread(target=search_loop)
    worker.start()
    for _ in index_library(library, model, batch_size=4):
        pass
    done.set()
    worker.join(timeout=60)
    assert not worker.is_alive() and not errors
    assert sizes and max(sizes) <= 5
    assert searcher.refresh() == 26
