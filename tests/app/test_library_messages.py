"""The app on the libraries of issue 15: photos another model indexed are counted and offered
for indexing, names that are not UTF-8 are shown (escaped) with their thumbnails, a library
another process is indexing says who holds it, and a read-only library is searched."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.gui.main_window import MainWindow
from app.gui.search.results import THUMB_SIZE, PathRole, ResultRole
from engine.indexer import index_library
from engine.library import Library
from engine.store import create_fresh
from tests.app.conftest import answer_remove
from tests.engine.processes import hold_writer

CTX = multiprocessing.get_context("spawn")


def _index(library, model, **kw):
    events = list(index_library(library, model, **kw))
    assert events[-1].phase == "done"
    return events[-1]


def test_the_app_offers_to_index_the_photos_another_model_indexed(
    qtbot, make_window, library, model, photo_folder, wait_for_index
):
    a, b = library.add_root(photo_folder / "a"), library.add_root(photo_folder / "b")
    _index(library, create_fresh("baseline", bits=32, image_size=96), roots=[b])
    _index(library, model, roots=[a])
    in_a, in_b = len(list(a.glob("*.jpg"))), len(list(b.glob("*.jpg")))
    window = make_window(auto_index=False)  # before: searched 'a' only, with not a word
    bar = window.message_bar
    assert window.models.active.searcher.not_indexed == in_b
    assert not bar.isHidden() and bar.kind == "offer"
    assert f"{in_b} photos are not indexed for this model yet" in bar.text()
    assert window.photos_label.text() == f"{in_a} photos indexed · {in_b} not yet for this model"
    assert bar.action_button.text() == "Index now" and not bar.action_button.isHidden()

    QTest.mouseClick(bar.action_button, Qt.MouseButton.LeftButton)
    assert window.models.index_job.is_running() and bar.isHidden()
    last = wait_for_index(window)
    assert last.phase == "done" and last.encoded == in_b
    assert window.models.active.searcher.size == in_a + in_b
    assert window.models.active.searcher.not_indexed == 0
    assert bar.isHidden() and window.photos_label.text() == f"{in_a + in_b} photos indexed"


def _named(folder: Path, name: bytes, data: bytes) -> Path:
    raw = os.path.join(os.fsencode(folder), name)
    try:
        with open(raw, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        pytest.skip(f"this file system refuses names that are not UTF-8: {exc}")
    return Path(os.fsdecode(raw))


def test_names_that_are_not_utf8_are_shown_escaped_with_their_thumbnails(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    folder = Path(os.fsdecode(os.path.join(os.fsencode(photo_folder), b"F\xf6tos")))
    folder.mkdir()
    first = sorted(photo_folder.rglob("*.jpg"))[0]
    cafe = _named(folder, b"caf\xe9.jpg", first.read_bytes())
    _named(folder, b"broken\xff.jpg", b"not a jpeg" * 30)
    library.add_root(folder)
    window = make_window(auto_index=True)
    last = wait_for_index(window)
    assert (last.encoded, last.failed) == (1, 1)  # before: the batch failed, nothing indexed

    panel = window.library_panel
    assert panel.folders.item(0).text().endswith("/F\\xf6tos")
    assert panel.failures.item(0).text().startswith("broken\\xff.jpg")

    response = window.models.active.searcher.search(Image.open(first), k=5)
    window._show_results(response)
    results = window.results_model
    rows = range(results.rowCount())
    [row] = [i for i in rows if results.index(i).data(ResultRole).path == cafe]
    index = results.index(row)
    assert os.fsencode(index.data(ResultRole).path) == os.fsencode(cafe)  # exact, for Open
    assert index.data(PathRole) == f"{photo_folder}/F\\xf6tos/caf\\xe9.jpg"  # shown, copied
    assert index.data(Qt.ItemDataRole.ToolTipRole).startswith(f"{photo_folder}/F\\xf6tos/caf\\xe9")
    qtbot.waitUntil(  # before: the thumbnail never arrived (its name was lost on the way)
        lambda: window.thumbnails.get(cafe, THUMB_SIZE) is not None, timeout=30_000
    )

    panel.folders.setCurrentRow(0)
    QTest.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(panel.foldersChanged, timeout=10_000):
        assert "F\\xf6tos from the library" in answer_remove(panel)
    assert library.roots() == [] and library.stats().photos == 0  # the right folder went
    wait_for_index(window)


def test_the_app_says_who_holds_a_library_that_another_process_indexes(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    library.add_root(photo_folder)
    ready, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=hold_writer, args=(str(library.path), ready, release))
    holder.start()
    try:
        assert ready.wait(120)
        window = make_window(auto_index=False)
        QTest.mouseClick(window.library_panel.index_button, Qt.MouseButton.LeftButton)
        wait_for_index(window)
        bar = window.message_bar
        assert bar.kind == "error" and f"process {holder.pid} on " in bar.text()
        assert "is writing to it" in bar.text() and window.library_panel.index_button.isEnabled()
        assert window.models.active.searcher.size == 0
    finally:
        release.set()
        holder.join(60)
    QTest.mouseClick(window.library_panel.index_button, Qt.MouseButton.LeftButton)
    assert wait_for_index(window).phase == "done"  # its turn now
    assert window.models.active.searcher.size == len(list(photo_folder.rglob("*.jpg")))


def test_a_read_only_library_is_searched_and_says_it_cannot_be_indexed(
    qtbot, tmp_path, library, model, photo_folder, settings, wait_for_index
):
    library.add_root(photo_folder)
    _index(library, model)
    library.close()
    read_only = Library(tmp_path / "library", read_only=True)
    window = MainWindow(library=read_only, model=model, settings=settings, auto_index=True)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.models.modelChanged, timeout=60_000):
        pass
    wait_for_index(window)
    good = len(list(photo_folder.rglob("*.jpg")))
    assert window.models.active.searcher.size == good  # searchable
    bar = window.message_bar
    assert bar.kind == "error" and "read-only" in bar.text()
    assert "can still be searched" in bar.text() and "Move it away" not in bar.text()
    response = window.models.active.searcher.search(Image.open(next(photo_folder.rglob("*.jpg"))))
    assert len(response.results) == min(50, good)
    window.close()
    read_only.close()
