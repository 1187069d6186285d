"""The incremental indexer on real photos from ../shared/data/sketchy, with the bad files a
real photo folder has: each is recorded with its reason and the rest are indexed; a model that
fails on some photos costs only those; an unmounted drive or an unreadable folder loses
nothing; same-size scans never swap codes; skipped paths are listed with their reason."""

import hashlib
import os
import shutil
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.catalog import SCHEMA_VERSION
from engine.indexer import content_key, index_library
from engine.library import Library
from engine.models import model_id
from engine.models.dssa import DSSAModel
from engine.sketch import normalize_sketch
from engine.store import create_fresh, load_model

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


# ----------------------------------------------------------------------------- model errors
DSSA_SHOES = Path(__file__).resolve().parents[2] / "assets" / "models" / "dssa-shoes-64.safetensors"
# no edge at 224 px, at dssa-shoes-64's edge threshold (0.2) as at the engine's (0.4)
BLANK_SAILBOATS = ("n04128499_13402.jpg",)


@pytest.fixture
def sailboats(tmp_path, shared_data):
    """A Sketchy sailboat photo without detectable edges and six others, one folder."""
    src = shared_data / "sketchy" / "photos" / "sailboat"
    others = sorted(p.name for p in src.glob("*.jpg") if p.name not in BLANK_SAILBOATS)[:6]
    root = tmp_path / "sailboats"
    root.mkdir()
    for name in (*BLANK_SAILBOATS, *others):
        shutil.copy(src / name, root / name)
    return root


@pytest.fixture(scope="module")
def dssa_shoes():
    if not DSSA_SHOES.is_file():
        pytest.skip(f"the shipped model {DSSA_SHOES.name} is not in assets/models")
    return load_model(DSSA_SHOES)


def test_dssa_indexes_photos_without_edges(tmp_path, sailboats, dssa_shoes):
    """dssa-shoes-64 on the sailboats: the blank edge maps in a batch used to stop the run with
    'all input arrays must have the same shape' and 0 photos indexed."""
    library = Library(tmp_path / "lib")
    library.add_root(sailboats)
    last = _run(library, dssa_shoes, batch_size=8)
    assert (last.encoded, last.failed) == (7, 0)
    mid = model_id(dssa_shoes)
    ids, _ = library.catalog.codes_for(mid, 64)
    assert len(ids) == 7 and len(library.catalog.features_for(mid, ids)) == 7


class DSSAWithoutBlankCase(DSSAModel):
    """The shipped DSSA weights with a bug of the same kind as the one shipped: an edge map with
    no edge raises (normalize_sketch's SketchError) instead of becoming blank paper."""

    def canonical_edges(self, edges: np.ndarray) -> np.ndarray:
        for edge in np.asarray(edges, np.uint8):
            normalize_sketch(edge)
        return super().canonical_edges(edges)


def test_a_model_error_costs_only_its_photos_and_the_run_goes_on(
    tmp_path, sailboats, dssa_shoes, model
):
    buggy = DSSAWithoutBlankCase(dssa_shoes.config)
    buggy.load_state_dict(dssa_shoes.state_dict())
    library = Library(tmp_path / "lib")
    library.add_root(sailboats)
    # one batch of 7 fails; photo by photo, the 6 with edges are encoded, the one without recorded
    last = _run(library, buggy.eval(), batch_size=8)
    assert (last.encoded, last.failed) == (6, 1)
    failures = {f.path.name: f.error for f in library.failures()}
    assert set(failures) == set(BLANK_SAILBOATS)
    assert all("dssa model could not encode" in e and "SketchError" in e for e in failures.values())
    assert library.stats().failed == 0  # readable photos: not failed for other models
    assert _run(library, model).encoded == 7  # another model indexes all seven
    # the fixed model (same weights, same id) tries it again, and its failure is forgotten
    again = _run(library, dssa_shoes, batch_size=8)
    assert (again.encoded, again.failed, again.unchanged) == (1, 0, 6)
    assert library.failures() == []
    assert library.stats(model_id(dssa_shoes)).coded == 7


# ----------------------------------------------------------------------------- unavailable roots
def test_an_empty_mount_point_keeps_every_models_codes(tmp_path, photos, model):
    """The folder moved away and an empty one in its place (an unmounted drive's mount point):
    the next run used to report 18 removed and drop every model's codes."""
    other = create_fresh("baseline", bits=32, image_size=96)
    library = Library(tmp_path / "lib")
    library.add_root(photos)
    _run(library, model)
    _run(library, other)
    away = tmp_path / "drive"
    os.rename(photos, away)
    photos.mkdir()
    last = _run(library, model)
    assert last.removed == 0  # was 18: every photo and every model's code gone
    assert (last.unavailable_roots, last.kept, last.found) == (1, N_GOOD, 0)
    assert last.unavailable == ((str(photos), "it is empty (a drive that is not mounted?)"),)
    assert library.stats(model_id(model)).coded == library.stats(model_id(other)).coded == N_GOOD
    photos.rmdir()
    os.rename(away, photos)  # mounted again: nothing to do
    last = _run(library, model)
    assert (last.unchanged, last.encoded, last.removed, last.unavailable_roots) == (N_GOOD, 0, 0, 0)
    # a readable, non-empty folder whose files are gone is positive evidence: they leave
    for path in sorted((photos / "a").glob("*.jpg")):
        path.unlink()
    assert _run(library, model).removed == N_GOOD // 2
    # and a user who wants an unavailable folder forgotten removes it
    os.rename(photos, away)
    photos.mkdir()
    assert _run(library, model).unavailable_roots == 1
    assert library.remove_root(photos) == N_GOOD - N_GOOD // 2
    assert library.stats(model_id(other)).photos == 0 and library.roots() == []


# ----------------------------------------------------------------------------- content keys
def _scan(photo: Path, path: Path, size=(1000, 1200)) -> Path:
    """An uncompressed BMP 'scan': the photo in the middle of a white page; two scans of one
    size share their first and last 64 KiB (header and white margins)."""
    page = Image.new("RGB", size, "white")
    page.paste(Image.open(photo).convert("RGB").resize((600, 600)), (200, 300))
    page.save(path, "BMP")
    return path


def legacy_key(path: Path) -> str:
    """The content key of catalogs indexed before: size, first and last 64 KiB."""
    size = path.stat().st_size
    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    with open(path, "rb") as fh:
        digest.update(fh.read(64 * 1024))
        fh.seek(-64 * 1024, os.SEEK_END)
        digest.update(fh.read(64 * 1024))
    return digest.hexdigest()


@pytest.fixture
def scans(tmp_path, shared_data):
    src = shared_data / "sketchy" / "photos"
    folder = tmp_path / "scans"
    folder.mkdir()
    made = [
        _scan(src / "airplane" / "n02691156_10151.jpg", folder / "scan1.bmp"),
        _scan(src / "apple" / "n07739125_10025.jpg", folder / "scan2.bmp"),
        _scan(src / "cup" / "n03063073_10319.jpg", folder / "scan3.bmp"),
    ]
    assert len({p.stat().st_size for p in made}) == 1
    assert len({legacy_key(p) for p in made}) == 1  # the old key cannot tell them apart
    return made


def test_same_size_scans_never_carry_each_others_code(tmp_path, scans, model):
    scan1, scan2, scan3 = scans
    library = Library(tmp_path / "lib")
    library.add_root(scan1.parent)
    _run(library, model)
    mid = model_id(model)
    before = _codes_by_path(library, mid)
    assert len({code for _, code in before.values()}) == 3  # three different codes
    # delete scan 2 and move scan 1, in one run: scan 1 keeps its own row and code
    scan2.unlink()
    moved = scan1.with_name("renamed.bmp")
    os.rename(scan1, moved)
    last = _run(library, model)
    assert (last.moved, last.removed, last.encoded) == (1, 1, 0)
    after = _codes_by_path(library, mid)
    assert after[moved] == before[scan1]
    # an edit in the middle (same size, new mtime) is not a touch: re-encoded
    shutil.copy(moved, scan3)  # scan 3 now holds scan 1's picture
    os.utime(scan3, ns=(2_000_000_000, 2_000_000_000))
    last = _run(library, model)
    assert (last.encoded, last.unchanged) == (1, 1)
    after = _codes_by_path(library, mid)
    assert after[scan3][0] == before[scan3][0] and after[scan3][1] == before[scan1][1]
    # a real touch (same bytes, new mtime) is still only a touch
    os.utime(moved, ns=(3_000_000_000, 3_000_000_000))
    last = _run(library, model)
    assert (last.encoded, last.unchanged) == (0, 2)


def test_a_catalog_with_the_old_keys_keeps_working(tmp_path, scans, model):
    """A catalog of schema 3 whose keys are the old partial ones: it is upgraded, unchanged
    photos stay as they are, and a photo with an old key that moves or changes is encoded again
    (an old key cannot be trusted to match) and gets a full key."""
    scan1, scan2, scan3 = scans
    library = Library(tmp_path / "lib")
    library.add_root(scan1.parent)
    _run(library, model)
    mid = model_id(model)
    before = _codes_by_path(library, mid)
    with library.catalog.transaction() as tx:
        for path in scans:
            tx.execute(
                "UPDATE photos SET content_key = ? WHERE path = ?",
                (legacy_key(path), os.fsencode(path)),
            )
        tx.execute("DROP TABLE skipped")
        tx.execute("DROP TABLE encode_failures")
        tx.execute("PRAGMA user_version = 3")
    library.close()
    library = Library(tmp_path / "lib")  # upgraded to the current schema on opening
    assert library.catalog.schema_version == SCHEMA_VERSION and library.failures() == []
    assert _run(library, model).unchanged == 3  # nothing read again
    scan2.unlink()
    moved = scan1.with_name("renamed.bmp")
    os.rename(scan1, moved)
    os.utime(scan3, ns=(2_000_000_000, 2_000_000_000))  # touched only
    last = _run(library, model)
    assert (last.moved, last.removed, last.encoded) == (0, 2, 2)
    after = _codes_by_path(library, mid)
    assert set(after) == {moved, scan3}
    assert after[moved][1] == before[scan1][1] and after[scan3] == before[scan3]
    keys = {r.path: r.content_key for r in library.catalog.photos_under(1).values()}
    assert keys == {str(moved): content_key(moved), str(scan3): content_key(scan3)}


# ----------------------------------------------------------------------------- skipped paths
def _deep_folder_with_a_photo(root: Path, photo: Path) -> str:
    """A photo under nested folders whose path is longer than PATH_MAX (made relative to
    open folders, as a program with a working directory deep down could); returns the first
    folder whose path is too long."""
    limit = os.pathconf(root, "PC_PATH_MAX")
    name = "d" * 200
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    path, first_too_long = str(root), None
    try:
        while first_too_long is None or len(path) < limit + 300:
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, path = inner, os.path.join(path, name)
            if first_too_long is None and len(os.fsencode(path)) >= limit:
                first_too_long = path
        out = os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, photo.read_bytes())
        os.close(out)
    finally:
        os.close(fd)
    return first_too_long


def test_skipped_paths_are_recorded_with_their_reason(tmp_path, photos, model):
    good = sorted(photos.rglob("*.jpg"))[0]
    odd = photos / "odd"
    odd.mkdir()
    (odd / "gone.jpg").symlink_to(odd / "deleted-long-ago.jpg")  # dangling
    (odd / "loop.jpg").symlink_to(odd / "loop.jpg")  # a link to itself
    os.mkfifo(odd / "pipe.jpg")  # reading it would block the decoder for ever
    deep = _deep_folder_with_a_photo(odd, good)
    library = Library(tmp_path / "lib")
    library.add_root(photos)
    last = _run(library, model)
    failures = {str(f.path): f.error for f in library.failures()}
    assert "dangling link" in failures.get(str(odd / "gone.jpg"), "")
    assert "symlink loop" in failures.get(str(odd / "loop.jpg"), "")
    assert "not a regular file" in failures.get(str(odd / "pipe.jpg"), "")
    assert "longer than the system allows" in failures.get(deep, "")
    assert (last.found, last.encoded, last.skipped) == (N_GOOD, N_GOOD, 4)
    # fixed: the link leads to a photo, the loop and the pipe are gone; the list follows
    (odd / "gone.jpg").unlink()
    (odd / "gone.jpg").symlink_to(good)
    (odd / "loop.jpg").unlink()
    (odd / "pipe.jpg").unlink()
    last = _run(library, model)
    assert (last.encoded, last.skipped) == (1, 1)
    assert [str(f.path) for f in library.failures()] == [deep]


def test_the_first_photos_are_committed_in_a_small_batch_before_the_rest(tmp_path, photos, model):
    """A cancel seconds into a run once kept nothing: the first commit waited for a whole batch
    of 32. Batches now start at FIRST_BATCH photos and double, and each is committed as it
    comes, so a cancel after the first commit keeps those photos."""
    from engine.indexer import FIRST_BATCH

    library = Library(tmp_path / "lib")
    library.add_root(photos)
    cancel = threading.Event()
    encoded = []
    for event in index_library(library, model, batch_size=32, cancel=cancel):
        if event.phase == "encoding":
            encoded.append(event.encoded)
            assert library.stats(model_id(model)).coded == event.encoded  # committed
            cancel.set()
    assert encoded == [FIRST_BATCH] and FIRST_BATCH < N_GOOD
    assert library.stats(model_id(model)).coded == FIRST_BATCH
    events = list(index_library(library, model, batch_size=32))
    steps = [e.encoded for e in events if e.phase == "encoding"]
    # the 10 left: a batch of 8, then one of 2 (counts are the run's running totals)
    assert steps == [FIRST_BATCH, N_GOOD - FIRST_BATCH]
