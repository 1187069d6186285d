"""``evaluate --rerank`` measures what the app does: on real QMUL-Shoe photos indexed into a real
library, the evaluator's query sketches are the search's own (``sketch_input``: the 256 px
sketch the model resizes), its codes and Hamming distances the app's, its float16 photo
features the catalog's, and its shortlist re-ranking (training.reranking, through
engine.searcher.rerank_shortlist) on the app's features is the app's re-ranked search."""

import json
import shutil
import threading

import numpy as np
import pytest
import torch

from engine.codes import pack_codes
from engine.indexer import index_library
from engine.library import Library
from engine.searcher import Searcher
from engine.sketch_input import sketch_input
from engine.store import create_fresh
from training.evaluate import EvalConfig, binary_matches, evaluation_set
from training.progress import drain
from training.reranking import reranked_ids

N_PHOTOS, SHORTLISTS = 16, (4, 8, 16)


@pytest.fixture(scope="module")
def dssa():
    torch.set_num_threads(1)
    model = create_fresh("dssa", bits=64, image_size=96)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # W off the identity, so HOLEF is not the Euclidean distance
        model.holef_weight.add_(0.05 * torch.randn(model.holef_weight.shape, generator=g))
    return model


@pytest.fixture
def shoes(shared_data, tmp_path):
    root = shared_data / "shoes_v1"
    if not (root / "photos").is_dir():
        pytest.skip(f"{root} is missing")
    ids = sorted(json.loads((root / "split.json").read_text())["test"], key=int)[:N_PHOTOS]
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in ids:
        shutil.copy(root / "photos" / f"{i}.jpg", folder / f"{i}.jpg")
    return root, folder, tuple(ids)


def test_evaluator_reranking_is_the_apps_search(dssa, shoes, tmp_path):
    root, folder, ids = shoes
    config = EvalConfig(split="test", classes=ids, baseline=False)
    ev = drain(evaluation_set(dssa, root, config, threading.Event()))
    names = [p.key for p in ev.dataset.photos]  # evaluator photo id -> photo name
    sketches = ev.sketches
    # the evaluator's side, as training.evaluate and training.reranking compute it
    codes_q = pack_codes(dssa.embed_sketches(sketches))
    codes_g = pack_codes(dssa.embed_photos(ev.photos))
    found = binary_matches(codes_q, codes_g, dssa.bits, "eval")
    q = dssa.sketch_features(sketches)
    g = dssa.photo_features(ev.photos).astype(np.float16)  # as the catalog keeps them

    library = Library(tmp_path / "lib")
    library.add_root(folder)
    for _ in index_library(library, dssa, workers=1):
        pass
    searcher = Searcher(library, dssa)
    mid = searcher.model_id
    catalog_ids, _ = library.catalog.codes_for(mid, dssa.bits)
    stored = library.catalog.features_for(mid, catalog_ids)
    by_name = {p.stem: stored[i] for i, p in library.catalog.paths_for(catalog_ids).items()}
    g_app = np.stack([by_name[n] for n in names])  # the catalog's features, evaluator order
    # the evaluator's photo features are the catalog's (float16, same decode)
    np.testing.assert_allclose(g.astype(np.float32), g_app.astype(np.float32), atol=1e-3)
    own = ev.relevant.argmax(axis=1)  # each sketch's own photo
    sketch_paths = [root / "sketches" / f"{names[i]}.png" for i in own]
    try:
        for row, path in enumerate(sketch_paths):
            plain = searcher.search(path, k=N_PHOTOS, expand=0)
            app_names = [r.path.stem for r in plain.results]
            # the same Hamming distance to every photo
            app_distance = {r.path.stem: r.distance for r in plain.results}
            eval_distance = {
                names[i]: int(d) for i, d in zip(found.ids[row], found.distances[row], strict=True)
            }
            assert app_distance == eval_distance
            # the query: the search's own sketch, so the same feature (batched: to rounding)
            np.testing.assert_array_equal(sketches[row], sketch_input(path))
            _, q_app = dssa.encode_sketches_and_features(sketch_input(path)[None])
            np.testing.assert_allclose(q[row], q_app[0], atol=1e-5)
            # the app's Hamming order (its tie order) re-ranked by the evaluator on the app's
            # features is the app's re-ranked search
            ranked = np.array([[names.index(n) for n in app_names]])
            for top in SHORTLISTS:
                ours = [names[i] for i in reranked_ids(dssa, q_app, g_app, ranked, top)[0][:top]]
                dist = dssa.feature_distances(q_app, g_app[ranked[0, :top]])
                app = searcher.search(path, k=top, rerank=True, shortlist=top, expand=0)
                assert app.reranked
                assert [r.path.stem for r in app.results] == ours
                np.testing.assert_allclose(
                    [r.score for r in app.results], np.sort(dist[0]), rtol=1e-5
                )
    finally:
        library.close()
