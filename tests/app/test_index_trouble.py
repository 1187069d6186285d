"""Indexing trouble in the app: a run that stops with an error leaves no busy bar and is not
run again into the same error on every switch back to its model; paths the indexer skipped are
in the "Could not be read" list; a folder whose drive is not mounted keeps its photos, says so,
and Remove still forgets it."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.gui.library.model_control import INJECTED
from engine.errors import LibraryBusyError
from engine.library import Library
from engine.models import save_checkpoint
from engine.paths import models_dir
from engine.store import create_fresh
from tests.app.conftest import answer_remove


def test_a_failed_run_stops_the_bar_and_is_not_repeated_on_switching_back(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    other = create_fresh("baseline", bits=32, image_size=96)
    checkpoint = str(save_checkpoint(other, models_dir() / "small32.safetensors", name="s32"))
    library.add_root(photo_folder)
    window = make_window(auto_index=False)
    panel, models = window.library_panel, window.models
    errors: list[BaseException] = []
    models.errorOccurred.connect(errors.append)
    holder = Library(library.path)  # another writer (as a CLI 'index' run would be)
    with holder.writing("indexing"):
        models.start_indexing()
        wait_for_index(window)
        assert len(errors) == 1 and isinstance(errors[0], LibraryBusyError)
        assert panel.progress.maximum() > 0  # the bar stopped: it was left busy (0, 0)
        assert "Indexing stopped" in panel.progress_label.text()
        assert panel.index_button.isEnabled()
        # another model: its own first run meets the same error, once
        with qtbot.waitSignal(models.modelChanged, timeout=60_000):
            models.switch(checkpoint)
        wait_for_index(window)
        assert len(errors) == 2
        for spec in (INJECTED, checkpoint, INJECTED):  # switching back and forth
            models.switch(spec)
            assert not models.index_job.is_running()
            assert "Indexing stopped" in panel.progress_label.text()
        assert len(errors) == 2
    holder.close()
    QTest.mouseClick(panel.index_button, Qt.MouseButton.LeftButton)  # the user retries
    last = wait_for_index(window)
    assert last.phase == "done" and len(errors) == 2
    assert "Up to date" in panel.progress_label.text()
    assert models.active.searcher.size == last.encoded > 0


def test_skipped_paths_and_an_unmounted_folder_in_the_panel(
    qtbot, make_window, library, photo_folder, wait_for_index, tmp_path
):
    good = len(list(photo_folder.rglob("*.jpg")))
    (photo_folder / "a" / "gone.jpg").symlink_to(photo_folder / "a" / "deleted.jpg")
    (photo_folder / "a" / "loop.jpg").symlink_to(photo_folder / "a" / "loop.jpg")
    library.add_root(photo_folder)
    window = make_window(auto_index=True)
    wait_for_index(window)
    panel = window.library_panel
    listed = {panel.failures.item(i).text() for i in range(panel.failures.count())}
    assert any(t.startswith("gone.jpg: ") and "dangling link" in t for t in listed)
    assert any(t.startswith("loop.jpg: ") and "symlink loop" in t for t in listed)
    assert "(2)" in panel.failures_label.text()
    assert "2 could not be read" in panel.progress_label.text()
    assert window.models.active.searcher.size == good

    # a file that fails is not read again while unchanged: the line still counts it, as the list
    (photo_folder / "a" / "broken.jpg").write_bytes(b"not a photo at all")
    for _ in range(2):
        QTest.mouseClick(panel.index_button, Qt.MouseButton.LeftButton)
        wait_for_index(window)
        assert "(3)" in panel.failures_label.text()
        assert "3 could not be read (listed below)" in panel.progress_label.text()
    (photo_folder / "a" / "broken.jpg").unlink()
    QTest.mouseClick(panel.index_button, Qt.MouseButton.LeftButton)
    assert wait_for_index(window).removed == 1
    assert "(2)" in panel.failures_label.text()

    os.rename(photo_folder, tmp_path / "drive")  # unmounted: an empty mount point is left
    photo_folder.mkdir()
    QTest.mouseClick(panel.index_button, Qt.MouseButton.LeftButton)
    last = wait_for_index(window)
    assert last.removed == 0 and last.kept == good
    assert "1 folder is not available" in panel.progress_label.text()
    item = panel.folders.item(0)
    assert "Not available: it is empty" in item.toolTip()
    assert window.models.active.searcher.size == good  # still searchable

    panel.folders.setCurrentRow(0)  # Remove forgets it, once asked
    QTest.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(window.models.searchableChanged, timeout=30_000):
        assert f"forgets its {good} photos" in answer_remove(panel)
    assert panel.folders.count() == 0 and window.models.active.searcher.size == 0
    assert library.roots() == [] and library.stats().photos == 0
