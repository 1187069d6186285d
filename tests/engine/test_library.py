"""The library's single writer, across real processes: a second writer is told who holds the
library or waits for it, a crashed writer's lock is taken over, and searches go on meanwhile."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket

import pytest
from PIL import Image

from engine.errors import LibraryBusyError
from engine.indexer import index_library
from engine.library import Library
from engine.searcher import Searcher
from engine.store import create_fresh
from tests.engine.processes import hold_writer

CTX = multiprocessing.get_context("spawn")


@pytest.fixture(scope="module")
def model():
    return create_fresh("baseline", bits=64, image_size=96)


@pytest.fixture
def photos(tmp_path, shared_data):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted((shared_data / "sketchy" / "photos").glob("*/*.jpg"))[::211][:6]:
        shutil.copy(p, folder / p.name)
    return folder


@pytest.fixture
def writer(tmp_path):
    """Start a second process that holds the writer lock of tmp_path/lib until released."""
    started = []

    def start(photo: str | None = None):
        ready, release = CTX.Event(), CTX.Event()
        proc = CTX.Process(target=hold_writer, args=(str(tmp_path / "lib"), ready, release, photo))
        proc.start()
        started.append((proc, release))
        assert ready.wait(120), "the writer process did not start"
        return proc, release

    yield start
    for proc, release in started:
        if proc.is_alive():  # (a killed waiter would make Event.set wait for it forever)
            release.set()
            proc.join(60)
        if proc.is_alive():
            proc.kill()


def test_a_second_writer_is_told_who_holds_the_library(tmp_path, photos, model, writer):
    library = Library(tmp_path / "lib")
    library.add_root(photos)
    proc, release = writer()

    with pytest.raises(LibraryBusyError) as info:
        list(index_library(library, model))  # before: both runs encoded everything
    holder = info.value.holder
    assert (holder.pid, holder.host, holder.purpose) == (proc.pid, socket.gethostname(), "indexing")
    message = str(info.value)
    assert f"process {proc.pid} on {socket.gethostname()}" in message
    assert "indexing since" in message and "Wait until it has finished" in message
    assert library.stats().photos == 0  # it did nothing
    with pytest.raises(LibraryBusyError):
        library.remove_root(photos)  # removing a folder under a running indexer is refused too

    waited = []

    def on_wait(h):  # the holder finishes while we wait
        waited.append(h)
        release.set()

    with library.writing("indexing", wait=60, on_wait=on_wait) as took_over:
        assert took_over is None  # released cleanly: nobody to take over from
        assert [h.pid for h in waited] == [proc.pid]
        events = list(index_library(library, model))  # re-entrant in the holding thread
    assert events[-1].encoded == 6
    proc.join(60)
    assert proc.exitcode == 0


def test_a_crashed_writers_lock_is_taken_over(tmp_path, photos, model, writer, caplog):
    library = Library(tmp_path / "lib")
    library.add_root(photos)
    proc, _ = writer()
    proc.kill()  # SIGKILL: no clean-up of any kind
    proc.join(60)
    with library.writing() as took_over:
        assert took_over is not None and took_over.pid == proc.pid
    assert f"process {proc.pid}" in caplog.text and "crashed" in caplog.text
    with library.writing() as took_over:  # released cleanly this time
        assert took_over is None
    assert list(index_library(library, model))[-1].encoded == 6


def test_searches_go_on_while_another_process_writes(tmp_path, photos, model, writer):
    library = Library(tmp_path / "lib")
    library.add_root(photos)
    list(index_library(library, model))
    library.close()
    new_photo = str(photos / "new.jpg")
    shutil.copy(sorted(photos.glob("*.jpg"))[0], new_photo)
    proc, release = writer(photo=new_photo)  # holds the lock and an open write transaction

    reader = Library(tmp_path / "lib")  # opening needs neither
    searcher = Searcher(reader, model)
    sketch = Image.open(sorted(photos.glob("*.jpg"))[1])
    assert len(searcher.search(sketch, k=10).results) == 6
    assert reader.stats().photos == 6  # the open transaction is not seen yet
    release.set()
    proc.join(60)
    assert proc.exitcode == 0
    assert reader.stats().photos == 7 and os.fspath(new_photo) in {
        str(p) for p in reader.catalog.paths_for(range(1, 20)).values()
    }
