"""Indexing from the library panel: progress, Cancel, resume where it stopped, and a corrupt
file listed with its reason."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.gui.library.panel import describe_progress
from app.progress import format_eta
from engine.indexer import IndexProgress
from engine.models import model_id
from tests.app.conftest import answer_remove


def test_index_cancel_resume_and_failures(
    qtbot, make_window, library, model, photo_folder, wait_for_index
):
    good = len(list(photo_folder.rglob("*.jpg")))
    (photo_folder / "a" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg" * 20)
    window = make_window(auto_index=False)
    panel = window.library_panel
    assert not panel.index_button.isEnabled()  # nothing to index yet
    assert "Add one in the Library panel" in window.results_view.empty_text

    seen: list[IndexProgress] = []

    def cancel_on_first_batch(update) -> None:
        seen.append(update.progress)
        if update.progress.phase == "encoding" and update.progress.encoded > 0:
            QTest.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)

    window.models.index_job.progressed.connect(cancel_on_first_batch)
    panel.add_folder(photo_folder)  # adding a folder starts indexing it
    assert window.models.index_job.is_running() and panel.cancel_button.isEnabled()
    last = wait_for_index(window)
    window.models.index_job.progressed.disconnect(cancel_on_first_batch)

    assert last.phase == "cancelled"
    assert any(p.phase == "scanning" for p in seen)
    encoding = [p for p in seen if p.phase == "encoding"]
    assert encoding and encoding[-1].to_encode >= good
    assert "Cancelled" in panel.progress_label.text()
    coded_after_cancel = library.stats(model_id(model)).coded
    assert 0 < coded_after_cancel < good
    assert panel.index_button.isEnabled() and not panel.cancel_button.isEnabled()

    seen.clear()
    window.models.index_job.progressed.connect(lambda u: seen.append(u.progress))
    QTest.mouseClick(panel.index_button, Qt.MouseButton.LeftButton)  # resume
    last = wait_for_index(window)
    assert last.phase == "done"
    assert last.to_encode <= good + 1 - coded_after_cancel  # only what was left
    assert library.stats(model_id(model)).coded == good
    assert panel.progress.value() == panel.progress.maximum()
    assert "Up to date" in panel.progress_label.text()
    assert window.models.active.searcher.size == good
    assert window.photos_label.text() == f"{good} photos indexed"

    assert panel.failures.isVisible() or not window.isVisible()
    assert panel.failures.count() == 1
    item = panel.failures.item(0)
    assert item.data(Qt.ItemDataRole.UserRole) == str(photo_folder / "a" / "corrupt.jpg")
    text = item.text()
    assert text.startswith("corrupt.jpg") and len(text) > len("corrupt.jpg: ")  # with a reason
    assert "(1)" in panel.failures_label.text()


def test_remove_folder_forgets_its_photos(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    library.add_root(photo_folder)
    window = make_window(auto_index=True)
    wait_for_index(window)
    assert window.models.active.searcher.size > 0
    panel = window.library_panel
    panel.folders.setCurrentRow(0)
    good = window.models.active.searcher.size
    QTest.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
    question = answer_remove(panel, remove=False)  # before: removed at once, on one click
    assert f"forgets its {good} photos" in question and panel.folders.count() == 1
    QTest.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(window.models.searchableChanged, timeout=30_000):
        answer_remove(panel)
    assert panel.folders.count() == 0
    assert window.models.active.searcher.size == 0
    assert "Add one in the Library panel" in window.results_view.empty_text


def test_progress_text_says_count_rate_and_eta():
    p = IndexProgress("encoding", found=500, to_encode=400, encoded=120, rate=35.24, eta_s=8.2)
    assert describe_progress(p) == "Indexing 120 of 400  ·  35.2 photos/s  ·  about 8 s left"
    assert format_eta(3725) == "about 1 h 02 min left"
    assert "found" in describe_progress(IndexProgress("scanning", found=7))
