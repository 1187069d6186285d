"""Errors reach the user without a crash; unhandled exceptions go to the crash log; the results
grid loads thumbnails off the GUI thread into a disk cache and acts on the chosen result."""

from __future__ import annotations

import sys
import threading

from PySide6.QtCore import Qt
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtTest import QTest

from app.gui.errors import CrashHandler, crash_log_path
from app.gui.search.results import THUMB_SIZE
from app.gui.search.thumbnails import thumbnail_cache_dir
from tests.app.conftest import shared_or_skip


def test_unhandled_exception_is_logged_and_shown(qtbot, make_window):
    window = make_window(auto_index=False)
    handler = CrashHandler(window.crashReported.emit)
    try:
        raise RuntimeError("boom in a slot")
    except RuntimeError:
        handler.handle(*sys.exc_info())
    log_text = crash_log_path().read_text()
    assert "RuntimeError: boom in a slot" in log_text and "Traceback" in log_text

    # from a worker thread too: the message is delivered to the GUI thread
    thread = threading.Thread(target=window.crashReported.emit, args=("from a thread",))
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: window.message_bar.text() == "from a thread")
    handler.handle(ValueError, ValueError("bad value"), None)
    assert (
        "bad value" in window.message_bar.text()
        and str(crash_log_path()) in window.message_bar.text()
    )


def test_engine_errors_are_shown_in_the_message_bar(qtbot, make_window, tmp_path):
    window = make_window(auto_index=False)
    window.library_panel.add_folder(tmp_path / "no such folder")
    assert window.message_bar.kind == "error"
    assert "does not exist" in window.message_bar.text()
    window.message_bar.dismiss()
    window.open_sketch(tmp_path / "missing.png")
    assert window.message_bar.isVisibleTo(window) and "missing.png" in window.message_bar.text()
    window.save_strokes(tmp_path / "empty.json")  # nothing drawn yet
    assert "no strokes" in window.message_bar.text()
    assert not crash_log_path().exists()  # engine errors are expected, not crashes


def test_results_grid_thumbnails_and_actions(
    qtbot, make_window, library, photo_folder, wait_for_index, monkeypatch
):
    sketch = sorted(shared_or_skip("sketchy", "sketches").glob("*/*.png"))[0]
    library.add_root(photo_folder)
    window = make_window(auto_index=True)
    window.show()
    qtbot.waitExposed(window)
    wait_for_index(window)
    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000):
        window.open_sketch(sketch)  # an image query
    model, view = window.results_model, window.results_view
    assert model.rowCount() == len(list(photo_folder.rglob("*.jpg")))
    first = model.index(0)
    path = first.data(Qt.ItemDataRole.UserRole + 1)

    model.data(first, Qt.ItemDataRole.DecorationRole)  # asks for the thumbnail
    qtbot.waitUntil(lambda: window.thumbnails.get(path, THUMB_SIZE) is not None, timeout=30_000)
    assert window.thumbnails.get(path, THUMB_SIZE).width() <= THUMB_SIZE
    assert list(thumbnail_cache_dir().rglob("*.jpg"))  # cached on disk

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    view.setFocus()
    view.setCurrentIndex(first)
    QTest.keyClick(view, Qt.Key.Key_Right)
    assert view.currentIndex().row() == 1
    QTest.keyClick(view, Qt.Key.Key_Return)
    second = model.index(1).data(Qt.ItemDataRole.UserRole + 1)
    assert [u.toLocalFile() for u in opened] == [second]
    QTest.keyClick(view, Qt.Key.Key_Space)
    assert view.preview.current_path() == second
    QTest.keyClick(view, Qt.Key.Key_Space)
    assert view.preview.current_path() is None
    view.copy_path(first)
    assert QGuiApplication.clipboard().text() == path
    view.reveal_index(first)  # on Linux: opens the containing folder
    assert opened[-1].toLocalFile() == str(photo_folder / path.split("/")[-2])


def test_closing_while_indexing_cancels_and_joins_threads(
    qtbot, make_window, library, photo_folder, settings
):
    library.add_root(photo_folder)
    window = make_window(auto_index=True)
    assert window.models.index_job.is_running()  # the background refresh on start
    window.count_spin.setValue(20)
    window.close()  # cancels the indexer and waits for it
    assert window.runner.running() == 0
    settings.sync()
    assert int(settings.value("result_count")) == 20  # settings persist
    assert settings.value("geometry") is not None
