import hashlib
import multiprocessing
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.catalog import MIGRATIONS, SCHEMA_VERSION, Catalog
from engine.errors import CatalogError, DiskFullError, LibraryReadOnlyError
from engine.indexer import index_library
from engine.library import Library
from engine.models import model_id
from engine.paths import display_path
from engine.searcher import Searcher
from engine.store import create_fresh
from tests.engine.processes import open_new_catalog


def test_schema_created_and_reopened(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite")
    assert cat.schema_version == SCHEMA_VERSION
    rid = cat.add_root(tmp_path)
    cat.close()
    again = Catalog(tmp_path / "c.sqlite")
    assert again.roots() == [(rid, tmp_path)]


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    Catalog(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(CatalogError, match="newer"):
        Catalog(path)


def test_not_a_database_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match=r"re-index|corrupt|Move it"):
        Catalog(path)


def test_codes_per_model_and_cascade(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite")
    rid = cat.add_root(tmp_path)
    cat.register_model("a", "baseline", 64)
    cat.register_model("b", "baseline", 128)
    with cat.transaction() as tx:
        ids = [
            cat.upsert_photo(tx, str(tmp_path / f"{i}.jpg"), rid, 10, 1, f"k{i}") for i in range(3)
        ]
        cat.put_codes(tx, "a", ids, np.arange(24, dtype=np.uint8).reshape(3, 8))
        cat.put_codes(tx, "b", ids[:1], np.ones((1, 16), np.uint8))
    got_ids, got_codes = cat.codes_for("a", 64)
    assert sorted(got_ids.tolist()) == sorted(ids)
    assert got_codes[got_ids.tolist().index(ids[1])].tolist() == list(range(8, 16))
    assert cat.codes_for("b", 128)[0].tolist() == [ids[0]]
    with pytest.raises(CatalogError, match="64-bit"):
        cat.codes_for("a", 128)
    assert cat.remove_root(tmp_path) == 3
    assert cat.photo_count(None) == 0
    assert len(cat.codes_for("a", 64)[0]) == 0


def test_failed_transaction_rolls_back(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite")
    rid = cat.add_root(tmp_path)
    with pytest.raises(RuntimeError), cat.transaction() as tx:
        cat.upsert_photo(tx, "x.jpg", rid, 1, 1, None)
        raise RuntimeError("crash mid-batch")
    assert cat.photo_count(None) == 0


def test_uncoded_count_is_what_the_model_has_not_tried_yet(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite")
    rid = cat.add_root(tmp_path)
    cat.register_model("m", "baseline", 64)
    with cat.transaction() as tx:
        coded, failed, _untried = (
            cat.upsert_photo(tx, str(tmp_path / f"{i}.jpg"), rid, 10, 1, f"k{i}") for i in range(3)
        )
        cat.upsert_photo(tx, str(tmp_path / "bad.jpg"), rid, 1, 1, None, "failed", "unreadable")
        cat.put_codes(tx, "m", [coded], np.zeros((1, 8), np.uint8))
        cat.put_encode_failures(tx, "m", [(failed, "the model failed on it")])
    assert cat.uncoded_count("m") == 1  # untried: an unreadable file or a failed one is listed
    assert cat.uncoded_count("other") == 3


# ------------------------------------------------------------------ on real photos (issue 15)
LATIN1_NAME = b"caf\xe9.jpg"  # a Latin-1 file name: not valid UTF-8


@pytest.fixture(scope="module")
def model():
    return create_fresh("baseline", bits=64, image_size=96)


@pytest.fixture
def real_photos(shared_data) -> list[Path]:
    return sorted((shared_data / "sketchy" / "photos").glob("*/*.jpg"))[::97][:12]


def write_bytes_named(folder: Path, name: bytes, data: bytes) -> str:
    """Create ``folder/name`` by its raw bytes; returns the path as ``os`` functions give it."""
    raw = os.path.join(os.fsencode(folder), name)
    try:
        with open(raw, "wb") as fh:
            fh.write(data)
    except OSError as exc:  # e.g. macOS file systems accept UTF-8 names only
        pytest.skip(f"this file system refuses the name {name!r}: {exc}")
    return os.fsdecode(raw)


def _index(library, model, **kw):
    events = list(index_library(library, model, **kw))
    assert events[-1].phase == "done"
    return events[-1]


def test_a_name_that_is_not_utf8_is_indexed_found_again_and_shown(tmp_path, real_photos, model):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in real_photos[:3]:
        shutil.copy(p, folder / p.name)
    cafe = write_bytes_named(folder, LATIN1_NAME, real_photos[3].read_bytes())
    broken = write_bytes_named(folder, b"broken\xff.jpg", b"not a jpeg at all" * 10)
    library = Library(tmp_path / "lib")
    library.add_root(folder)

    last = _index(library, model)
    assert (last.encoded, last.failed) == (4, 1)  # before: UnicodeEncodeError, 0 indexed
    [failure] = library.failures()
    assert os.fsencode(failure.path) == os.fsencode(broken)
    assert "broken\\xff.jpg" in display_path(failure.path)  # shown escaped, printable
    failure.error.encode("utf-8")  # the stored reason is printable text too

    searcher = Searcher(library, model)
    assert searcher.size == 4 and searcher.not_indexed == 0
    results = searcher.search(Image.open(real_photos[3]), k=4).results
    found = [r.path for r in results if os.fsencode(r.path).endswith(LATIN1_NAME)]
    assert found and os.fsencode(found[0]) == os.fsencode(cafe)  # the exact bytes come back
    assert os.path.isfile(found[0])
    assert display_path(found[0]).endswith("caf\\xe9.jpg")

    library.close()
    again = Library(tmp_path / "lib")  # a new process would see the same
    assert _index(again, model).unchanged == 5  # found again by its stored bytes: no re-encode
    os.rename(cafe, os.path.join(os.fsencode(folder), b"caf\xe9 2.jpg"))
    last = _index(again, model)
    assert (last.moved, last.encoded, last.removed) == (1, 0, 0)  # a rename keeps its code


def test_a_folder_whose_name_is_not_utf8_is_kept_and_removed(tmp_path, real_photos, model):
    folder = Path(write_bytes_named(tmp_path, b"F\xf6tos", b""))
    folder.unlink()
    folder.mkdir()
    shutil.copy(real_photos[0], folder / "a.jpg")
    library = Library(tmp_path / "lib")
    assert library.add_root(folder) == folder
    assert _index(library, model).encoded == 1
    assert [os.fsencode(p) for p in Library(tmp_path / "lib").roots()] == [os.fsencode(folder)]
    assert library.remove_root(folder) == 1
    assert library.roots() == [] and library.stats().photos == 0


def test_schema_2_catalog_is_upgraded_and_keeps_its_photos_and_codes(tmp_path):
    path = tmp_path / "c.sqlite"
    with sqlite3.connect(path) as conn:  # as SketchSearch with schema 2 wrote it: text paths
        for script in MIGRATIONS[:2]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 2")
        conn.execute("INSERT INTO roots(id, path, added_at) VALUES (1, '/photos/été', 0)")
        conn.execute(
            "INSERT INTO photos(id, path, root_id, size, mtime_ns, content_key, status, "
            "updated_at) VALUES (7, '/photos/été/a.jpg', 1, 10, 5, 'k', 'ok', 0)"
        )
        conn.execute("INSERT INTO models VALUES ('m', 'baseline', 64, 0)")
        conn.execute("INSERT INTO codes VALUES (7, 'm', ?)", (bytes(range(8)),))
    cat = Catalog(path)
    assert cat.schema_version == SCHEMA_VERSION >= 3
    assert cat.roots() == [(1, Path("/photos/été"))]
    assert list(cat.photos_under(1)) == ["/photos/été/a.jpg"]
    ids, codes = cat.codes_for("m", 64)
    assert ids.tolist() == [7] and codes[0].tolist() == list(range(8))
    with cat.transaction() as tx:  # the same photo written again is the same row, not a twin
        assert cat.upsert_photo(tx, "/photos/été/a.jpg", 1, 10, 5, "k") == 7
    assert cat.photo_count(None) == 1


def test_processes_creating_one_catalog_at_once_all_succeed(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):  # before: 'table roots already exists' in every attempt
        path = str(tmp_path / f"c{attempt}.sqlite")
        barrier, results = ctx.Barrier(5), ctx.Queue()
        procs = [
            ctx.Process(target=open_new_catalog, args=(path, barrier, results)) for _ in "12345"
        ]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == ["ok"] * 5
        assert Catalog(path).schema_version == SCHEMA_VERSION


def test_a_full_disk_is_a_clear_error_and_loses_nothing(tmp_path, shared_data, model):
    photos = sorted((shared_data / "sketchy" / "photos").glob("*/*.jpg"))[::50][:40]
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos[:4]:
        shutil.copy(p, folder / p.name)
    library = Library(tmp_path / "lib")
    library.add_root(folder)
    _index(library, model)
    for p in photos[4:]:
        shutil.copy(p, folder / p.name)
    # a real 'database or disk is full' from SQLite, without filling the disk: this thread's
    # connection (the one the indexer writes with) may not grow the file any more
    conn = library.catalog._connect()
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(DiskFullError) as info:
        _index(library, model, batch_size=4)
    message = str(info.value)
    assert "is full" in message and "Free some disk space" in message
    assert "everything saved before is kept" in message and "Move it away" not in message

    reader = Library(tmp_path / "lib")  # another connection: the batches before are all there
    ids, codes = reader.catalog.codes_for(model_id(model), 64)
    assert 4 <= len(ids) < len(photos) and len(codes) == len(ids)
    assert reader.stats(model_id(model)).photos == len(ids)  # no photo without its code
    assert reader.catalog._query("PRAGMA integrity_check") == [("ok",)]
    conn.execute("PRAGMA max_page_count = 1073741823")  # space freed: the run completes
    assert _index(library, model).encoded == len(photos) - len(ids)
    assert reader.stats(model_id(model)).coded == len(photos)


def test_a_full_disk_while_saving_settings_keeps_the_old_ones(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here to give a real ENOSPC")
    library = Library(tmp_path / "lib")
    library.set_setting("model", "baseline")
    (tmp_path / "lib" / "settings.json.tmp").symlink_to("/dev/full")  # writes get ENOSPC
    with pytest.raises(DiskFullError, match="Free some disk space"):
        library.set_setting("model", "dsh")
    assert Library(tmp_path / "lib").get_setting("model") == "baseline"


def test_a_read_only_catalog_is_searched_and_refuses_changes_clearly(tmp_path, real_photos, model):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in real_photos[:5]:
        shutil.copy(p, folder / p.name)
    library = Library(tmp_path / "lib")
    library.add_root(folder)
    _index(library, model)
    library.close()
    catalog_file = tmp_path / "lib" / "catalog.sqlite"
    digest = hashlib.sha256(catalog_file.read_bytes()).hexdigest()

    read_only = Library(tmp_path / "lib", read_only=True)  # SQLite's mode=ro
    assert read_only.read_only
    searcher = Searcher(read_only, model)
    assert len(searcher.search(Image.open(real_photos[0]), k=5).results) == 5
    for change in (
        lambda: read_only.add_root(tmp_path),
        lambda: read_only.remove_root(folder),
        lambda: _index(read_only, model),
    ):
        with pytest.raises(LibraryReadOnlyError) as info:
            change()
        assert "can still be searched" in str(info.value)
        assert "Move it away" not in str(info.value) and "index the folders again" not in str(
            info.value
        )
    read_only.close()
    assert hashlib.sha256(catalog_file.read_bytes()).hexdigest() == digest
