"""Result tiles name their photo and act on it (Open, Folder, Similar), and the grid holds still
under the pointer while indexing adds photos (before: "#3 · d 25/64" only, and the grid
reshuffled every 1.5 s while a person looked at it)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QEnterEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from app.gui.search.results import MetaRole, ResultRole, action_rects
from engine.sketch import read_quickdraw
from tests.app.conftest import shared_or_skip
from tests.app.test_search_as_you_draw import replay


class UrlCatcher(QObject):
    """Receives the file URLs the app opens (Qt's own URL handler hook), instead of a file
    manager or an image viewer."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


def click(view, pos: QPoint) -> None:
    QTest.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos
    )


def _drawn_window(qtbot, make_window, library, folder, wait_for_index):
    drawing = next(read_quickdraw(shared_or_skip("quickdraw", "apple.ndjson.gz"), limit=1))
    library.add_root(folder)
    window = make_window(auto_index=True)
    window.resize(1024, 700)
    window.show()
    qtbot.waitExposed(window)
    wait_for_index(window)
    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000):
        replay(window.canvas, drawing.strokes)
    return window


def test_tiles_show_the_file_name_and_their_buttons_open_reveal_and_search_similar(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    window = _drawn_window(qtbot, make_window, library, photo_folder, wait_for_index)
    view, model = window.results_view, window.results_model
    first = model.index(0)
    result = first.data(ResultRole)
    assert first.data(Qt.ItemDataRole.DisplayRole) == result.path.name
    # the default model ranks by the asymmetric distance, which the tile shows
    assert first.data(MetaRole) == f"#1  ·  d {result.score:.1f}/64"
    assert "asymmetric distance" in first.data(Qt.ItemDataRole.ToolTipRole)
    assert first.data(Qt.ItemDataRole.ToolTipRole).startswith(str(result.path))

    catcher = UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "open")
    try:
        buttons = action_rects(view.visualRect(first), view)
        click(view, buttons["open"].center())
        click(view, buttons["reveal"].center())
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert [Path(u.toLocalFile()) for u in catcher.urls] == [result.path, result.path.parent]

    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
        click(view, buttons["similar"].center())
    assert window.canvas.is_photo()  # the photo is the query now, by the photo encoder
    similar = blocker.args[0]
    assert similar.results[0].path == result.path and similar.results[0].distance == 0
    assert "photos like this photo" in window.picture_label.text()


def test_new_photos_wait_while_the_pointer_is_over_the_grid(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    window = _drawn_window(qtbot, make_window, library, photo_folder / "a", wait_for_index)
    view, model = window.results_view, window.results_model
    before = model.results()
    assert before and all(photo_folder / "a" in r.path.parents for r in before)

    center = QPointF(view.viewport().rect().center())
    QApplication.sendEvent(view, QEnterEvent(center, center, view.mapToGlobal(center)))
    assert view.hovered
    window.library_panel.add_folder(photo_folder / "b")  # indexing starts and adds photos
    with qtbot.waitSignal(window.models.index_job.finished, timeout=120_000):
        pass
    qtbot.waitUntil(
        lambda: not window.search.is_busy() and window._held is not None, timeout=30_000
    )
    assert model.results() == before  # the tiles under the pointer did not move
    assert "update when the pointer leaves" in window.note_label.text()

    QApplication.sendEvent(view, QEvent(QEvent.Type.Leave))
    assert not view.hovered
    after = model.results()
    assert after != before
    assert any(photo_folder / "b" in r.path.parents for r in after)
    assert window.note_label.text() == ""


def test_a_new_sketch_is_shown_at_once_even_under_the_pointer(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    window = _drawn_window(qtbot, make_window, library, photo_folder, wait_for_index)
    view = window.results_view
    center = QPointF(view.viewport().rect().center())
    QApplication.sendEvent(view, QEnterEvent(center, center, view.mapToGlobal(center)))
    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
        window.undo_action.trigger()  # the person changed the sketch: its answer shows
    assert window.results_model.results() == blocker.args[0].results
    assert window._held is None
