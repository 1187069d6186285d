"""The incremental indexer on real photos from ../shared/data/sketchy, with the bad files a
real photo folder has: each is recorded with its reason and the rest are indexed."""

import os
import shutil
import struct
import threading
import zlib

import pytest

from engine.indexer import index_library
from engine.library import Library
from engine.models import model_id
from engine.store import create_fresh

N_GOOD = 18


@pytest.fixture(scope="module")
def model():
    return create_fresh("baseline", bits=64, image_size=96)


@pytest.fixture
def photos(tmp_path, shared_data):
    src = sorted((shared_data / "sketchy" / "photos").glob("*/*.jpg"))[::150][:N_GOOD]
    root = tmp_path / "photos"
    for i, p in enumerate(src):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, sub / p.name)
    return root


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG structure whose header claims width x height pixels (a few bytes of data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _add_bad_files(root):
    good = sorted(root.rglob("*.jpg"))[0].read_bytes()
    bad = root / "bad"
    bad.mkdir()
    (bad / "corrupt.jpg").write_bytes(good[:400] + bytes(range(256)) * 40)
    from PIL import Image

    Image.new("RGB", (300, 200), "red").save(bad / "full.png")
    data = (bad / "full.png").read_bytes()
    (bad / "truncated.png").write_bytes(data[: len(data) // 2])
    (bad / "full.png").unlink()
    (bad / "bomb.png").write_bytes(_bomb_png(100_000, 100_000))
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.jpg").write_text("these are my holiday notes, not a photo")
    return bad


def _run(library, model, **kw):
    events = list(index_library(library, model, **kw))
    assert events[-1].phase in ("done", "cancelled")
    return events[-1]


def test_bad_files_recorded_rest_indexed(tmp_path, photos, model):
    bad = _add_bad_files(photos)
    library = Library(tmp_path / "lib")
    library.add_root(photos)
    last = _run(library, model, batch_size=8)
    assert (last.found, last.encoded, last.failed) == (N_GOOD + 5, N_GOOD, 5)
    failures = {f.path.name: f.error for f in library.failures()}
    assert set(failures) == {p.name for p in bad.iterdir()}
    assert all(name in msg for name, msg in failures.items())  # each reason names its file
    assert "too large" in failures["bomb.png"]
    assert "truncated" in failures["truncated.png"]
    assert "empty" in failures["empty.jpg"]
    ids, codes = library.catalog.codes_for(model_id(model), 64)
    assert len(ids) == N_GOOD and codes.shape == (N_GOOD, 8)
    # a second run does nothing: good files are unchanged, bad ones stay recorded
    again = _run(library, model)
    assert (again.encoded, again.failed, again.unchanged) == (0, 0, N_GOOD + 5)


def _codes_by_path(library, mid):
    ids, codes = library.catalog.codes_for(mid, 64)
    paths = library.catalog.paths_for(ids)
    return {paths[int(i)]: (int(i), bytes(c)) for i, c in zip(ids, codes, strict=False)}


def test_rename_delete_touch_and_changed_content(tmp_path, photos, model):
    library = Library(tmp_path / "lib")
    library.add_root(photos)
    _run(library, model)
    mid = model_id(model)
    before = _codes_by_path(library, mid)
    files = sorted(photos.rglob("*.jpg"))
    moved_to = photos / "renamed" / "holiday.jpg"
    moved_to.parent.mkdir()
    os.rename(files[0], moved_to)
    files[1].unlink()
    os.utime(files[2], ns=(1, 1_000_000_000))  # touched, content unchanged
    files[3].write_bytes(files[4].read_bytes())  # content replaced
    last = _run(library, model)
    assert (last.moved, last.removed, last.encoded, last.failed) == (1, 1, 1, 0)
    after = _codes_by_path(library, mid)
    assert len(after) == N_GOOD - 1
    assert after[moved_to] == before[files[0]]  # same row id, same code: nothing re-encoded
    assert files[0] not in after and files[1] not in after
    assert after[files[2]] == before[files[2]]
    assert after[files[3]][0] == before[files[3]][0]  # same row, new code of the new content
    assert after[files[3]][1] == after[files[4]][1]


def test_unmounted_root_keeps_its_rows(tmp_path, photos, model):
    library = Library(tmp_path / "lib")
    library.add_root(photos / "a")
    library.add_root(photos / "b")
    _run(library, model)
    count = library.stats(model_id(model)).coded
    os.rename(photos / "a", tmp_path / "elsewhere")  # the drive is gone
    last = _run(library, model)
    assert last.unavailable_roots == 1 and last.removed == 0
    assert library.stats(model_id(model)).coded == count


def test_cancel_then_resume_indexes_each_photo_exactly_once(tmp_path, photos, model):
    library = Library(tmp_path / "lib")
    library.add_root(photos)
    cancel = threading.Event()
    first = []
    for event in index_library(library, model, batch_size=4, cancel=cancel):
        first.append(event)
        if event.phase == "encoding":
            cancel.set()
    assert first[-1].phase == "cancelled"
    done_first = first[-1].encoded
    assert 0 < done_first < N_GOOD
    second = _run(library, model, batch_size=4)
    assert second.encoded == N_GOOD - done_first
    assert second.unchanged == done_first
    assert library.stats(model_id(model)).coded == N_GOOD


def test_codes_of_two_models_are_kept_side_by_side(tmp_path, photos, model):
    other = create_fresh("baseline", bits=32, image_size=96)
    library = Library(tmp_path / "lib")
    library.add_root(photos)
    _run(library, model)
    assert _run(library, other).encoded == N_GOOD
    assert _run(library, model).encoded == 0  # switching back needs no work
    a = library.catalog.codes_for(model_id(model), 64)[1]
    b = library.catalog.codes_for(model_id(other), 32)[1]
    assert a.shape == (N_GOOD, 8) and b.shape == (N_GOOD, 4)


def test_unreadable_folder_is_a_clear_error(tmp_path):
    from engine.errors import LibraryError

    library = Library(tmp_path / "lib")
    with pytest.raises(LibraryError, match="does not exist"):
        library.add_root(tmp_path / "nope")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(LibraryError, match="not a folder"):
        library.add_root(tmp_path / "file.jpg")
    assert library.roots() == []
