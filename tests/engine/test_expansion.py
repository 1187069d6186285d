"""Query expansion (engine.expansion): the vote against a brute-force loop on real codes, the
searcher's expanded search against the same loop over its library, and the evaluator's entry
point taking the very same path."""

import shutil

import numpy as np
import pytest

from engine.codes import hamming_reference, pack_codes, unpack_codes
from engine.errors import ConfigError
from engine.expansion import (
    CodeTable,
    expand_against_gallery,
    expand_queries,
    majority_vote,
)
from engine.index import BinaryIndex
from engine.indexer import index_library
from engine.library import Library
from engine.searcher import DEFAULT_EXPAND, Searcher
from engine.sketch import load_sketch
from engine.sketch_input import sketch_input
from engine.store import create_fresh


def indexed_library(tmp_path, files, model) -> Library:
    """A library of copies of ``files``, indexed by ``model``."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in files:
        shutil.copy(p, photos / p.name)
    library = Library(tmp_path / "lib")
    library.add_root(photos)
    for _ in index_library(library, model):
        pass
    return library


def brute_force_expand(queries, ids, codes, bits, m, weight=1.0):
    """The expansion written out plainly: sort every gallery code by (Hamming distance, id),
    take the first m, and count the votes of each bit one by one."""
    out = []
    for q in queries:
        dist = hamming_reference(q[None], codes)[0]
        order = sorted(range(len(ids)), key=lambda j: (dist[j], ids[j]))[:m]
        q_bits = unpack_codes(q[None], bits)[0]
        n_bits = unpack_codes(codes[order], bits)
        new = []
        for b in range(bits):
            ones = weight * q_bits[b] + sum(int(row[b]) for row in n_bits)
            zeros = weight * (1 - q_bits[b]) + sum(1 - int(row[b]) for row in n_bits)
            new.append(1 if ones > zeros else 0 if ones < zeros else int(q_bits[b]))
        out.append(np.packbits(np.array(new, np.uint8)))
    return np.stack(out)


@pytest.fixture(scope="module")
def model():
    return create_fresh("baseline", bits=64, image_size=96)


@pytest.fixture(scope="module")
def real_codes(model, shared_data):
    """Codes of 200 real Sketchy photos and 12 real sketches from an untrained model."""
    photos_dir, sketches_dir = (
        shared_data / "sketchy" / "photos",
        shared_data / "sketchy" / "sketches",
    )
    from training.arrays import read_photo

    photos = np.stack([read_photo(p, 96) for p in sorted(photos_dir.rglob("*.jpg"))[::13][:200]])
    sketches = np.stack([load_sketch(s) for s in sorted(sketches_dir.rglob("*.png"))[::211][:12]])
    return model.encode_sketches(sketches), model.encode_photos(photos)


@pytest.mark.parametrize("m,weight", [(10, 1.0), (4, 1.0), (5, 2.5), (3, 0.0), (1, 1.0)])
def test_expansion_matches_a_brute_force_loop_on_real_codes(real_codes, m, weight):
    queries, gallery = real_codes
    rng = np.random.default_rng(0)
    ids = rng.permutation(10_000)[: len(gallery)].astype(np.int64)  # ids as a catalog has them
    index = BinaryIndex(64, "test")
    index.add(ids, gallery)
    got = expand_queries(index, CodeTable.from_pairs(ids, gallery), queries, m, weight)
    want = brute_force_expand(queries, ids, gallery, 64, m, weight)
    np.testing.assert_array_equal(got, want)
    if m > weight:
        assert (got != queries).any()  # the neighbours did move some bits
    else:  # one neighbour against a query of weight 1: every disagreement is a tie
        np.testing.assert_array_equal(got, queries)


def test_ties_keep_the_query_bit_and_zero_neighbours_change_nothing():
    q = pack_codes(np.array([[1.0] * 8 + [-1.0] * 8]))
    a = pack_codes(np.array([[-1.0] * 16]))
    b = pack_codes(np.array([[1.0] * 16]))
    # weight 1 + 2 neighbours of opposite views: every bit 2 against 1 for the query's side
    np.testing.assert_array_equal(majority_vote(q, np.stack([a, b], axis=1), 16), q)
    # weight 0, two neighbours that disagree everywhere: ties everywhere, the query's bits kept
    np.testing.assert_array_equal(majority_vote(q, np.stack([a, b], axis=1), 16, 0.0), q)
    # two neighbours agreeing against the query win
    np.testing.assert_array_equal(majority_vote(q, np.stack([a, a], axis=1), 16), a)
    index = BinaryIndex(16, "t")
    index.add(np.array([3, 7]), np.concatenate([a, b]))
    table = CodeTable.from_pairs(np.array([7, 3]), np.concatenate([b, a]))
    np.testing.assert_array_equal(expand_queries(index, table, q, 0), q)
    with pytest.raises(ConfigError, match=">= 0"):
        expand_queries(index, table, q, -1)
    with pytest.raises(ConfigError, match="weight"):
        majority_vote(q, np.stack([a], axis=1), 16, -1.0)


def test_the_evaluator_entry_point_is_the_searchers_path(real_codes):
    queries, gallery = real_codes
    ids = np.arange(len(gallery), dtype=np.int64)
    want = brute_force_expand(queries, ids, gallery, 64, 10)
    np.testing.assert_array_equal(expand_against_gallery(queries, gallery, 64, 10), want)
    # more neighbours than photos: all of them vote
    small = gallery[:5]
    np.testing.assert_array_equal(
        expand_against_gallery(queries, small, 64, 50),
        brute_force_expand(queries, ids[:5], small, 64, 5),
    )


def test_searcher_expands_with_the_library_codes(model, shared_data, tmp_path):
    files = sorted((shared_data / "sketchy" / "photos").glob("*/*.jpg"))[::50][:52]
    library = indexed_library(tmp_path, files, model)
    searcher = Searcher(library, model)
    sketch_file = sorted((shared_data / "sketchy" / "sketches" / "cup").glob("*.png"))[0]
    plain = searcher.search(sketch_file, k=52, expand=0, asymmetric=False)
    assert plain.expanded == 0 and "expand" not in plain.timings_ms and not plain.asymmetric
    assert searcher.search(sketch_file, k=52).expanded == min(DEFAULT_EXPAND, 52)
    expanded = searcher.search(sketch_file, k=52, expand=10, asymmetric=False)
    assert expanded.expanded == 10 and expanded.timings_ms["expand"] > 0

    ids, codes = library.catalog.codes_for(searcher.model_id, 64)
    query = pack_codes(searcher.encoder.embed(sketch_input(sketch_file)[None]))
    new_code = brute_force_expand(query, ids, codes, 64, 10)
    dist = hamming_reference(new_code, codes)[0]
    want = sorted(zip(dist.tolist(), ids.tolist(), strict=True))
    got = [(r.distance, r.photo_id) for r in expanded.results]
    assert got == want  # every photo, by distance to the expanded code, ties by id
    assert got != [(r.distance, r.photo_id) for r in plain.results]
    library.close()


def test_a_fine_grained_model_is_never_expanded(shared_data, tmp_path):
    """DSSA looks for one particular photo: its query's neighbours are other instances of the same
    kind, so the searcher ignores ``expand`` and answers exactly as without it."""
    dssa = create_fresh("dssa", bits=32, image_size=96)
    assert not dssa.expands and create_fresh("baseline", bits=32, image_size=96).expands
    shoes = sorted((shared_data / "shoes_v1" / "photos").glob("*.jpg"))[:12]
    library = indexed_library(tmp_path, shoes, dssa)
    searcher = Searcher(library, dssa)
    sketch_file = sorted((shared_data / "shoes_v1" / "sketches").rglob("*.png"))[0]
    plain = searcher.search(sketch_file, k=12, expand=0)
    asked = searcher.search(sketch_file, k=12, expand=5)
    assert len(plain.results) == 12
    assert asked.expanded == 0 and "expand" not in asked.timings_ms
    assert [(r.photo_id, r.distance) for r in asked.results] == [
        (r.photo_id, r.distance) for r in plain.results
    ]
    library.close()
