"""Asymmetric ranking (engine.asymmetric): against a plain loop on real model outputs, the
searcher's default path over a real library, and the edge cases a search must survive."""

import math

import numpy as np
import pytest

from engine.asymmetric import (
    NEIGHBOUR_WEIGHT,
    asymmetric_against_gallery,
    asymmetric_search,
    scaled_queries,
)
from engine.codes import hamming_reference, pack_codes, unpack_codes
from engine.errors import ConfigError
from engine.expansion import CodeTable
from engine.index import BinaryIndex
from engine.indexer import index_library
from engine.models import model_id
from engine.searcher import Searcher
from engine.sketch import load_sketch
from engine.sketch_input import sketch_input
from engine.store import create_fresh
from tests.engine.test_expansion import indexed_library
from training.arrays import read_photo


@pytest.fixture(scope="module")
def model():
    return create_fresh("baseline", bits=64, image_size=96)


def fitted_baseline(shared_data, size=96):
    """A baseline whose codes are fitted (PCA and ITQ on real photos and sketches): a model that
    stores its photos' outputs (``photo_values``), unlike the sign-code one."""
    from engine.models.fitted import fit_model_codes, with_fitted_codes
    from training.progress import drain

    model = with_fitted_codes(create_fresh("baseline", bits=64, image_size=size)).eval()
    photos = sorted((shared_data / "sketchy" / "photos").rglob("*.jpg"))[5::23][:100]
    sketches = sorted((shared_data / "sketchy" / "sketches").rglob("*.png"))[7::97][:40]
    drain(
        fit_model_codes(
            model,
            np.stack([load_sketch(s) for s in sketches]),
            np.stack([read_photo(p, size) for p in photos]),
        )
    )
    assert model.photo_values
    return model


@pytest.fixture(scope="module")
def fitted(shared_data):
    return fitted_baseline(shared_data)


@pytest.fixture(scope="module")
def real_outputs(model, shared_data):
    """Unbinarised outputs of 12 real sketches, and the codes and outputs of 150 real photos."""
    photos = sorted((shared_data / "sketchy" / "photos").rglob("*.jpg"))[::17][:150]
    sketches = sorted((shared_data / "sketchy" / "sketches").rglob("*.png"))[::211][:12]
    values = model.embed_sketches(np.stack([load_sketch(s) for s in sketches]))
    photo_values = model.embed_photos(np.stack([read_photo(p, 96) for p in photos]))
    return values, pack_codes(photo_values), photo_values


def photo_vector(code, bits, value=None):
    """What a photo is ranked with, written out: its stored value scaled to norm sqrt(K) where
    it has a usable one, else its code's +-1 bits."""
    if value is not None:
        v = [float(a) for a in value]
        norm = math.sqrt(sum(a * a for a in v)) if all(math.isfinite(a) for a in v) else 0.0
        if norm > 1e-12:
            return [a * math.sqrt(bits) / norm for a in v]
    return [1.0 if b else -1.0 for b in unpack_codes(code[None], bits)[0]]


def plain_distance(x, vector, bits):
    """(K - x' . s) / 2 written out, x' = x scaled to norm sqrt(K), s the photo's vector."""
    norm = math.sqrt(sum(float(v) * float(v) for v in x))
    dot = sum(float(v) * math.sqrt(bits) / norm * b for v, b in zip(x, vector, strict=True))
    return round((bits - dot) / 2, 6)


def brute_force(
    values, ids, codes, bits, k, shortlist, expand, weight=NEIGHBOUR_WEIGHT, photo_values=None
):
    """The asymmetric search written out: the Hamming shortlist of the query's code (ties by
    id), ranked by the plain distance to each photo's vector (``photo_values[j]`` where given,
    else its code); with expand, the query plus weight times the mean vector of its nearest,
    rescaled, ranks the same shortlist."""
    held = [None] * len(ids) if photo_values is None else photo_values
    vectors = [photo_vector(codes[j], bits, held[j]) for j in range(len(ids))]
    out = []
    for x in values:
        width = min(max(k, shortlist), len(ids))
        d = hamming_reference(pack_codes(x[None]), codes)[0]
        cand = sorted(range(len(ids)), key=lambda j: (d[j], ids[j]))[:width]
        if expand:
            dist = {j: plain_distance(x, vectors[j], bits) for j in cand}
            near = sorted(cand, key=lambda j: (dist[j], ids[j]))[:expand]
            mean = np.mean([vectors[j] for j in near], axis=0)
            x = x / np.linalg.norm(x) * math.sqrt(bits) + weight * mean
        dist = {j: plain_distance(x, vectors[j], bits) for j in cand}
        ranked = sorted(cand, key=lambda j: (dist[j], ids[j]))[:k]
        out.append([(int(ids[j]), dist[j]) for j in ranked])
    return out


@pytest.mark.parametrize("k,shortlist,expand", [(150, 150, 0), (10, 40, 0), (20, 60, 5), (5, 5, 3)])
def test_asymmetric_search_matches_a_plain_loop_on_real_outputs(real_outputs, k, shortlist, expand):
    values, codes, _ = real_outputs
    ids = np.random.default_rng(1).permutation(5000)[: len(codes)].astype(np.int64)
    index = BinaryIndex(64, "test")
    index.add(ids, codes)
    got = asymmetric_search(
        index, CodeTable.from_pairs(ids, codes), values, k, shortlist=shortlist, expand=expand
    )
    want = brute_force(values, ids, codes, 64, k, shortlist, expand)
    for row_ids, row_dist, row_want in zip(got.ids, got.distances, want, strict=True):
        assert list(row_ids) == [i for i, _ in row_want]
        np.testing.assert_allclose(row_dist, [d for _, d in row_want], atol=2e-6)


@pytest.mark.parametrize("k,shortlist,expand", [(150, 150, 0), (10, 40, 0), (20, 60, 5)])
def test_stored_photo_values_rank_the_shortlist_as_a_plain_loop(real_outputs, k, shortlist, expand):
    """With the photos' outputs in the table (float16, as a library stores them) the shortlist,
    still the Hamming one, is ranked by the cosine to them; a photo without values (NaN: indexed
    before they were stored), or with values all zero, is ranked by its code."""
    values, codes, photo_values = real_outputs
    ids = np.random.default_rng(2).permutation(5000)[: len(codes)].astype(np.int64)
    stored = photo_values.astype(np.float16)
    stored[::7] = np.nan
    stored[3] = 0.0
    index = BinaryIndex(64, "test")
    index.add(ids, codes)
    keep = ~np.isnan(stored).any(axis=1)  # the catalog holds no row for the NaN ones
    table = CodeTable.from_pairs(ids, codes, (ids[keep][::-1], stored[keep][::-1]))
    np.testing.assert_array_equal(table.lookup_values(ids), stored)  # aligned, NaN where none
    got = asymmetric_search(index, table, values, k, shortlist=shortlist, expand=expand)
    want = brute_force(values, ids, codes, 64, k, shortlist, expand, photo_values=stored)
    for row_ids, row_dist, row_want in zip(got.ids, got.distances, want, strict=True):
        assert list(row_ids) == [i for i, _ in row_want]
        np.testing.assert_allclose(row_dist, [d for _, d in row_want], atol=2e-6)
    by_codes = asymmetric_search(
        index, CodeTable.from_pairs(ids, codes), values, k, shortlist=shortlist, expand=expand
    )
    assert (got.ids != by_codes.ids).any()  # the values changed the order
    full = asymmetric_against_gallery(values, codes, 64, photo_values=stored)
    whole = brute_force(values, np.arange(len(codes)), codes, 64, 150, 150, 0, photo_values=stored)
    assert [list(r) for r in full.ids] == [[i for i, _ in w] for w in whole]


def test_the_asymmetric_order_differs_from_the_hamming_order(real_outputs):
    values, codes, _ = real_outputs
    full = asymmetric_against_gallery(values, codes, 64)
    hamming = [
        sorted(range(len(codes)), key=lambda j, d=d: (d[j], j))
        for d in hamming_reference(pack_codes(values), codes)
    ]
    assert (full.ids != np.array(hamming)).any(axis=1).all()  # every query ranks differently
    assert (np.diff(full.distances, axis=1) >= 0).all()


def test_a_code_as_query_gives_the_hamming_distance(real_outputs):
    """A query that is itself a code (+-1 values) ranks exactly as the index: same distances,
    ties by id."""
    _, codes, _ = real_outputs
    queries = unpack_codes(codes[:6], 64).astype(np.float32) * 2 - 1
    got = asymmetric_against_gallery(queries, codes, 64)
    want = hamming_reference(codes[:6], codes)
    for row, (row_ids, row_dist) in enumerate(zip(got.ids, got.distances, strict=True)):
        np.testing.assert_array_equal(row_dist, want[row][row_ids])
        assert list(row_ids) == sorted(range(len(codes)), key=lambda j: (want[row][j], j))
        assert row_ids[0] == row or want[row][row_ids[0]] == 0


def test_equal_codes_tie_exactly_and_go_by_id(real_outputs):
    values, codes, _ = real_outputs
    gallery = np.concatenate([codes[:5], codes[:5], codes[:5]])  # each code three times
    got = asymmetric_against_gallery(values[:3], gallery, 64)
    for row_ids, row_dist in zip(got.ids, got.distances, strict=True):
        for start in range(0, len(row_ids), 3):
            group = row_ids[start : start + 3]
            assert len(set(row_dist[start : start + 3])) == 1  # exact ties
            assert list(group) == sorted(group) and len({g % 5 for g in group}) == 1


def test_blank_and_broken_queries_fall_back_to_their_code():
    x = np.array([[0.0] * 64, [np.nan] + [1.0] * 63, [np.inf] + [-1.0] * 63])
    scaled = scaled_queries(x)
    assert np.isfinite(scaled).all()
    np.testing.assert_array_equal(np.abs(scaled), 1.0)  # a code: +-1 everywhere
    codes = pack_codes(np.random.default_rng(0).standard_normal((30, 64)))
    got = asymmetric_against_gallery(x, codes, 64, expand=3)
    assert got.ids.shape == (3, 30) and np.isfinite(got.distances).all()


def test_sizes_and_bad_arguments(real_outputs):
    values, codes, _ = real_outputs
    ids = np.arange(len(codes), dtype=np.int64)
    index, table = BinaryIndex(64, "t"), CodeTable(ids, codes)
    index.add(ids, codes)
    # more asked than held: every photo once
    got = asymmetric_search(index, table, values[:2], 500, shortlist=10, expand=400)
    assert got.ids.shape == (2, len(codes))
    assert all(len(set(r)) == len(codes) for r in got.ids)
    empty = BinaryIndex(64, "e")
    none = asymmetric_search(empty, CodeTable(ids[:0], codes[:0]), values[:2], 10)
    assert none.ids.shape == (2, 0)
    with pytest.raises(ConfigError, match="do not fit"):
        asymmetric_search(index, table, values[:, :32], 10)
    with pytest.raises(ConfigError, match="at least"):
        asymmetric_search(index, table, values, 0)


def test_the_searcher_ranks_asymmetrically_by_default(fitted, model, shared_data, tmp_path):
    """Against the photos' stored outputs for a model with fitted codes; a sign-code model
    stores none and ranks against the codes."""
    files = sorted((shared_data / "sketchy" / "photos").glob("*/*.jpg"))[::50][:52]
    library = indexed_library(tmp_path, files, fitted)
    for _ in index_library(library, model):  # the sign-code baseline: codes only
        pass
    assert not model.photo_values
    assert library.catalog.featured_ids(model_id(model)) == set()
    assert Searcher(library, model)._table.values is None
    model = fitted
    searcher = Searcher(library, model)
    sketch_file = sorted((shared_data / "sketchy" / "sketches" / "cup").glob("*.png"))[0]
    response = searcher.search(sketch_file, k=30, expand=4)
    assert response.asymmetric and response.expanded == 4
    ids, codes = library.catalog.codes_for(searcher.model_id, 64)
    held = library.catalog.features_for(searcher.model_id, ids.tolist())  # the photos' outputs
    assert sorted(held) == sorted(ids.tolist())  # the indexer stored one for every photo
    photo_values = [held[i] for i in ids.tolist()]
    values = searcher.encoder.embed(sketch_input(sketch_file)[None])  # the query's own values
    want = brute_force(values, ids, codes, 64, 30, 1000, 4, photo_values=photo_values)[0]
    assert [r.photo_id for r in response.results] == [i for i, _ in want]
    np.testing.assert_allclose([r.score for r in response.results], [d for _, d in want], atol=2e-6)
    own = hamming_reference(pack_codes(values), codes)[0]  # distance: to the query's own code
    by_id = dict(zip(ids.tolist(), own.tolist(), strict=True))
    assert [r.distance for r in response.results] == [by_id[r.photo_id] for r in response.results]
    hamming = searcher.search(sketch_file, k=30, expand=0, asymmetric=False)
    assert not hamming.asymmetric and all(r.score is None for r in hamming.results)
    assert [r.photo_id for r in hamming.results] != [r.photo_id for r in response.results]
    library.close()
