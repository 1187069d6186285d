"""Users' re-ranking: DSSA photo features stored as float16 beside the codes, the catalog
migration that adds them, and the searcher's exact HOLEF re-ranking of a Hamming shortlist.

Real SQLite, real Faiss index, a real DSSA network (seeded weights, W moved off the identity so
HOLEF differs from the Euclidean distance) and real QMUL-Shoe photos and sketches."""

import logging
import shutil
import sqlite3

import numpy as np
import pytest
import torch

from engine.asymmetric import asymmetric_search
from engine.catalog import MIGRATIONS, Catalog
from engine.codes import pack_codes
from engine.defaults import DEFAULT_EXPAND
from engine.expansion import CodeTable
from engine.images import load_photo, prepare_photo
from engine.indexer import index_library
from engine.library import Library
from engine.models import model_id
from engine.searcher import Searcher, rerank_shortlist
from engine.sketch_input import sketch_input
from engine.store import create_fresh
from tests.engine.test_asymmetric import fitted_baseline

N_PHOTOS = 16


@pytest.fixture(scope="module")
def dssa():
    torch.set_num_threads(1)
    model = create_fresh("dssa", bits=64, image_size=96)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        w = model.holef_weight
        w.add_(0.05 * torch.randn(w.shape, generator=g))
    return model


@pytest.fixture
def shoes(shared_data):
    root = shared_data / "shoes_v1"
    if not (root / "photos").is_dir():
        pytest.skip(f"{root} is missing")
    return root


@pytest.fixture
def library(tmp_path, shoes):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((shoes / "photos").glob("*.jpg"))[:N_PHOTOS]:
        shutil.copy(p, photos / p.name)
    lib = Library(tmp_path / "lib")
    lib.add_root(photos)
    yield lib
    lib.close()


def _index(library, model):
    for _ in index_library(library, model, workers=1):
        pass


def _sketches(shoes, library):
    """Sketches of the indexed photos (the same ids)."""
    names = [p.stem for p in sorted(library.roots()[0].glob("*.jpg"))]
    return [
        shoes / "sketches" / f"{n}.png"
        for n in names
        if (shoes / "sketches" / f"{n}.png").is_file()
    ]


def test_features_are_stored_as_float16_with_the_codes(library, dssa, shoes):
    _index(library, dssa)
    catalog, mid = library.catalog, model_id(dssa)
    ids, codes = catalog.codes_for(mid, dssa.bits)
    assert len(ids) == N_PHOTOS and catalog.featured_ids(mid) == set(ids.tolist())
    stored = catalog.features_for(mid, ids)
    paths = catalog.paths_for(ids)
    prepared = np.stack([prepare_photo(load_photo(paths[int(i)], target_size=96), 96) for i in ids])
    expected_codes, expected = dssa.encode_photos_and_features(prepared)
    assert np.array_equal(codes, expected_codes)
    assert np.array_equal(expected_codes, dssa.encode_photos(prepared))  # one pass = encode path
    sketch = np.stack([sketch_input(p) for p in _sketches(shoes, library)[:3]])
    sketch_codes, sketch_features = dssa.encode_sketches_and_features(sketch)
    assert np.array_equal(sketch_codes, dssa.encode_sketches(sketch))
    np.testing.assert_allclose(sketch_features, dssa.sketch_features(sketch), atol=1e-6)
    got = np.stack([stored[int(i)] for i in ids])
    assert got.dtype == np.float16 and got.shape == (N_PHOTOS, dssa.config.feature_dim)
    np.testing.assert_allclose(got.astype(np.float32), expected, atol=1e-3)


def test_category_models_store_their_outputs_and_an_older_library_gets_them(
    library, shoes, shared_data
):
    """A category-level model with fitted codes (``photo_values``) stores each photo's
    unbinarised output, whose signs are its code, as float16; a library indexed before they were
    stored is searched by its codes until the next indexing run, which stores them without
    changing a code. A sign-code model stores none."""
    signs = create_fresh("baseline", bits=64, image_size=96).eval()
    _index(library, signs)
    assert library.catalog.featured_ids(model_id(signs)) == set()
    baseline = fitted_baseline(shared_data)
    _index(library, baseline)
    catalog, mid = library.catalog, model_id(baseline)
    ids, codes = catalog.codes_for(mid, 64)
    assert len(ids) == N_PHOTOS and catalog.featured_ids(mid) == set(ids.tolist())
    paths = catalog.paths_for(ids)
    prepared = np.stack([prepare_photo(load_photo(paths[int(i)], target_size=96), 96) for i in ids])
    outputs = baseline.embed_photos(prepared)
    held_ids, held = catalog.all_features(mid, 64)
    assert held.dtype == np.float16 and held.shape == (N_PHOTOS, 64)
    by_id = dict(zip(held_ids.tolist(), held, strict=True))
    got = np.stack([by_id[int(i)] for i in ids]).astype(np.float32)
    np.testing.assert_allclose(got, outputs, atol=2e-3 * np.abs(outputs).max())
    assert np.array_equal(pack_codes(outputs), codes)
    assert catalog.all_features(mid, 32)[0].size == 0  # another width is never mixed in

    sketch = _sketches(shoes, library)[0]
    with_values = Searcher(library, baseline).search(sketch, k=10)
    with catalog.transaction() as tx:  # as a catalog indexed before outputs were stored
        tx.execute("DELETE FROM features WHERE model_id = ?", (mid,))
    searcher = Searcher(library, baseline)
    assert searcher._table.values is not None and np.isnan(searcher._table.values).all()
    by_codes = searcher.search(sketch, k=10)
    codes_table = CodeTable.from_pairs(ids, codes)
    want = asymmetric_search(
        searcher._index,
        codes_table,
        searcher.encoder.embed(sketch_input(sketch)[None]),
        10,
        expand=DEFAULT_EXPAND,
    )
    assert [r.photo_id for r in by_codes.results] == want.ids[0].tolist()
    _index(library, baseline)  # the next run stores them; the codes are the same
    assert catalog.featured_ids(mid) == set(ids.tolist())
    assert np.array_equal(catalog.codes_for(mid, 64)[1], codes)
    searcher.refresh()
    again = searcher.search(sketch, k=10)
    assert [r.photo_id for r in again.results] == [r.photo_id for r in with_values.results]
    assert [r.score for r in again.results] == [r.score for r in with_values.results]


def test_migration_of_a_schema_1_catalog_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO roots(id, path, added_at) VALUES (1, '/photos', 0)")
    conn.execute(
        "INSERT INTO photos(id, path, root_id, size, mtime_ns, content_key, status, updated_at) "
        "VALUES (7, '/photos/a.jpg', 1, 10, 20, 'k', 'ok', 0)"
    )
    conn.execute("INSERT INTO models(id, method, bits, added_at) VALUES ('m', 'dssa', 64, 0)")
    conn.execute("INSERT INTO codes VALUES (7, 'm', ?)", (bytes(range(8)),))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    catalog = Catalog(path)
    assert catalog.schema_version == len(MIGRATIONS) >= 2
    ids, codes = catalog.codes_for("m", 64)
    assert ids.tolist() == [7] and codes[0].tolist() == list(range(8))
    assert catalog.photos_under(1)["/photos/a.jpg"].content_key == "k"
    assert catalog.featured_ids("m") == set()
    feature = np.linspace(-1, 1, 512, dtype=np.float32)[None]
    with catalog.transaction() as tx:
        catalog.put_features(tx, "m", [7], feature)
    np.testing.assert_allclose(catalog.features_for("m", [7])[7], feature[0], atol=1e-3)
    with catalog.transaction() as tx:  # a photo whose content changed loses its feature too
        catalog.drop_codes(tx, 7)
    assert catalog.featured_ids("m") == set() and catalog.coded_ids("m") == set()
    catalog.close()


def test_rerank_orders_the_shortlist_by_holef_and_equals_brute_force(library, dssa, shoes):
    _index(library, dssa)
    searcher = Searcher(library, dssa)
    mid = model_id(dssa)
    ids, _ = library.catalog.codes_for(mid, dssa.bits)
    stored = library.catalog.features_for(mid, ids)
    gallery = np.stack([stored[int(i)] for i in ids])
    changed = 0
    for sketch in _sketches(shoes, library)[:4]:
        plain = searcher.search(sketch, k=N_PHOTOS)
        full = searcher.search(sketch, k=N_PHOTOS, rerank=True, shortlist=N_PHOTOS)
        assert full.reranked and full.rerank_note is None
        # the whole gallery re-ranked is the brute-force HOLEF ranking
        _, query = dssa.encode_sketches_and_features(sketch_input(sketch)[None])
        brute = dssa.feature_distances(query, gallery)[0]
        assert [r.photo_id for r in full.results] == ids[np.argsort(brute, kind="stable")].tolist()
        np.testing.assert_allclose([r.score for r in full.results], np.sort(brute), rtol=1e-5)
        # a shortlist of 8: the top 5 are the Hamming top 8 sorted by HOLEF
        part = searcher.search(sketch, k=5, rerank=True, shortlist=8)
        head = [r.photo_id for r in plain.results[:8]]
        by_holef = sorted(head, key=lambda i: brute[ids.tolist().index(i)])
        assert [r.photo_id for r in part.results] == by_holef[:5]
        assert [r.rank for r in part.results] == [1, 2, 3, 4, 5]
        changed += [r.photo_id for r in full.results] != [r.photo_id for r in plain.results]
    assert changed >= 1  # HOLEF does reorder the Hamming ranking


def test_model_without_the_capability_is_unaffected(library, shoes):
    baseline = create_fresh("baseline", bits=64, image_size=96)
    _index(library, baseline)
    searcher = Searcher(library, baseline)
    sketch = _sketches(shoes, library)[0]
    plain = searcher.search(sketch, k=10)
    asked = searcher.search(sketch, k=10, rerank=True)
    assert [(r.photo_id, r.distance, r.score) for r in asked.results] == [
        (r.photo_id, r.distance, r.score) for r in plain.results
    ]
    assert not asked.reranked and "no exact distance" in asked.rerank_note
    assert asked.asymmetric  # its own ranking, as without the request


def test_missing_features_fall_back_to_hamming_with_a_reason(library, dssa, shoes, caplog):
    _index(library, dssa)
    mid = model_id(dssa)
    with library.catalog.transaction() as tx:  # as a catalog indexed before features existed
        tx.execute("DELETE FROM features WHERE model_id = ?", (mid,))
    searcher = Searcher(library, dssa)
    sketch = _sketches(shoes, library)[0]
    plain = searcher.search(sketch, k=10)
    with caplog.at_level(logging.WARNING, logger="engine.searcher"):
        asked = searcher.search(sketch, k=10, rerank=True)
    assert not asked.reranked and "Index the library again" in asked.rerank_note
    assert any("no stored features" in r.getMessage() for r in caplog.records)
    assert [r.photo_id for r in asked.results] == [r.photo_id for r in plain.results]
    # indexing again stores the missing features, and re-ranking works
    _index(library, dssa)
    assert len(library.catalog.featured_ids(mid)) == N_PHOTOS
    assert searcher.search(sketch, k=10, rerank=True).reranked


def test_rerank_shortlist_orders_by_the_exact_distance_and_keeps_hamming_order_in_ties():
    """engine.searcher.rerank_shortlist, which the searcher and evaluation share."""

    class Exact:  # a model whose exact distance is given
        def __init__(self, dist):
            self.dist = dist

        def feature_distances(self, queries, gallery):
            return self.dist[None]

    rng = np.random.default_rng(0)
    for _ in range(5):
        dist = rng.random(6).astype(np.float32)
        dist[1] = dist[2]  # a tie keeps the Hamming order
        order, sorted_dist = rerank_shortlist(Exact(dist), np.zeros((1, 4)), np.zeros((6, 4)))
        assert order.tolist() == sorted(range(6), key=lambda i: (dist[i], i))
        np.testing.assert_array_equal(sorted_dist, dist[order])


@pytest.fixture(scope="module")
def dssa_hog(dssa):
    """The same network with a HOG term (hog_weight 0.7, 16 dimensions) whose fitted values
    are seeded stand-ins: this tests how they are used, training's tests how they are fitted."""
    from engine.hog import hog_dim
    from engine.models import create

    model = create("dssa", bits=64, image_size=96, hog_weight=0.7, hog_dim=16).eval()
    missing, _ = model.load_state_dict(dssa.state_dict(), strict=False)
    assert all(k.startswith("hog_fit.") for k in missing)
    rng = np.random.default_rng(5)
    n = hog_dim(model.config.hog_block)
    basis = np.linalg.qr(rng.standard_normal((n, 16)))[0]
    model.hog_fit.load(rng.random(n) * 0.02, basis, (0.3, 0.1))
    return model


def test_the_hog_term_adds_the_drawings_hog_distance_and_reranks_as_brute_force(
    library, dssa_hog, shoes
):
    """A DSSA model with a HOG term stores [network feature, projected HOG] per photo, and
    re-ranks by HOLEF / s0 + w (1 - HOG cosine) / s1, a distance of each pair alone: the
    searcher's re-ranking equals that formula computed here from the drawings themselves."""
    from engine.hog import drawing_hog
    from engine.models.dssa import holef_pairwise

    model = dssa_hog
    _index(library, model)
    mid = model_id(model)
    ids, _ = library.catalog.codes_for(mid, model.bits)
    stored = library.catalog.features_for(mid, ids)
    gallery = np.stack([stored[int(i)] for i in ids]).astype(np.float32)
    dim = model.config.feature_dim
    assert gallery.shape[1] == dim + 16
    term = model.hog_fit

    def projected(drawings):
        p = (drawing_hog(drawings, model.config.hog_block) - term.mean.numpy()) @ term.basis.numpy()
        return p / np.linalg.norm(p, axis=1, keepdims=True)

    where = library.catalog.paths_for(ids.tolist())
    paths = [where[int(i)] for i in ids]
    size = model.photo_size  # decoded as the indexer does (draft mode to the target size)
    photos = np.stack([prepare_photo(load_photo(p, target_size=size), size) for p in paths])
    np.testing.assert_allclose(
        gallery[:, dim:], projected(model.photo_drawings(photos, None)), atol=2e-3
    )
    searcher = Searcher(library, model)
    for sketch in _sketches(shoes, library)[:3]:
        arr = sketch_input(sketch)[None]
        with torch.no_grad():
            net = model.features(model.sketch_drawings(arr)).numpy()
        learnt = (
            holef_pairwise(
                torch.from_numpy(net), torch.from_numpy(gallery[:, :dim]), model.holef_weight
            )
            .detach()[0]
            .numpy()
        )
        hog = 1.0 - projected(model.sketch_drawings(arr)) @ gallery[:, dim:].T
        expected = learnt / 0.3 + 0.7 * hog[0] / 0.1
        full = searcher.search(sketch, k=N_PHOTOS, rerank=True, shortlist=N_PHOTOS)
        np.testing.assert_allclose([r.score for r in full.results], np.sort(expected), rtol=1e-4)
        assert [r.photo_id for r in full.results] == ids[
            np.argsort(expected, kind="stable")
        ].tolist()


def test_a_hog_term_survives_a_float16_checkpoint_bit_for_bit_and_unfitted_refuses(
    dssa_hog, tmp_path
):
    from engine.errors import ConfigError
    from engine.models import create, load_checkpoint, save_checkpoint

    path = save_checkpoint(dssa_hog, tmp_path / "hog.safetensors", weights_dtype="float16")
    loaded = load_checkpoint(path)
    for name, value in dssa_hog.hog_fit.state_dict().items():
        assert torch.equal(loaded.hog_fit.state_dict()[name], value), name
    assert loaded.config.hog_weight == 0.7 and loaded.config.hog_dim == 16
    fresh = create("dssa", bits=64, image_size=96, hog_weight=1.0, hog_dim=16).eval()
    with pytest.raises(ConfigError, match="never fitted"):
        fresh.photo_features(np.zeros((1, 96, 96, 3), np.uint8))
