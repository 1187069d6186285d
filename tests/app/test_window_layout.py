"""The main window at a laptop's 1024x700: every toolbar control in view (before, Results and
Re-rank hid in the overflow), a narrower Library dock that can be hidden, one name for the
model, the folder dialog in the user's folders, and a subfolder said to be covered already."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QStandardPaths
from PySide6.QtWidgets import QToolBar

from app.gui.main_window import MainWindow
from engine.model_files import default_checkpoint, read_checkpoint_info


def _visible_controls(bar: QToolBar) -> list[str]:
    """The toolbar's actions whose buttons or widgets lie in view (not in the overflow)."""
    shown = []
    for action in bar.actions():
        widget = bar.widgetForAction(action)
        if action.isVisible() and not action.isSeparator():
            inside = widget is not None and widget.isVisible()
            inside = inside and bar.rect().contains(widget.geometry())
            shown.append((action.text() or widget.__class__.__name__, inside))
    return shown


def test_every_toolbar_control_is_in_view_at_1024x700(qtbot, make_window):
    window = make_window(auto_index=False)
    window.resize(1024, 700)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.width() == 1024)
    for bar in (window.sketch_toolbar, window.search_toolbar):
        hidden = [name for name, inside in _visible_controls(bar) if not inside]
        assert not hidden, f"{bar.windowTitle()} toolbar hides {hidden}"
    for control in (window.count_spin, window.expand_spin, window.model_combo):
        assert control.isVisible()
    rerank = window.search_toolbar.widgetForAction(window.rerank_action)
    assert rerank.isVisible() and window.rerank_action.toolTip()


def test_the_library_dock_is_narrower_and_can_be_hidden(qtbot, make_window, settings):
    window = make_window(auto_index=False)
    window.resize(1400, 860)
    window.show()
    qtbot.waitExposed(window)
    dock = window.library_dock
    qtbot.waitUntil(lambda: 250 < dock.width() <= 300)  # a fifth of the window
    window.resize(1024, 700)  # a smaller window narrows it too, not only the canvas
    qtbot.waitUntil(lambda: dock.width() < 240)  # was 274 px at 1024
    assert dock.width() >= 190 and window.canvas.width() > 300
    assert window.library_action.text() == "Library panel" and window.library_action.isChecked()
    window.library_action.trigger()
    assert dock.isHidden() and not window.library_action.isChecked()
    window.close()  # the choice is kept
    again = MainWindow(library=window.library, model=window.models.active.model, settings=settings)
    qtbot.addWidget(again)
    again.show()
    qtbot.waitExposed(again)
    assert again.library_dock.isHidden()
    again.library_action.trigger()
    assert not again.library_dock.isHidden()
    again.close()


def test_the_model_has_one_name_in_the_chooser_and_the_status_bar(qtbot, library, settings):
    default = default_checkpoint()
    if default is None:
        pytest.skip("needs the shipped default model")
    name = read_checkpoint_info(default).name
    window = MainWindow(library=library, settings=settings, auto_index=False)
    qtbot.addWidget(window)
    try:
        with qtbot.waitSignal(window.models.modelChanged, timeout=120_000):
            pass
        described = window.models.describe_active()
        assert described.startswith(f"{name} (") and "default" not in described
        assert window.model_combo.currentText() == described
        assert window.model_label.text() == f"Model: {described}"
    finally:
        window.close()


def test_the_folder_dialog_opens_in_the_users_folders_then_where_one_was_added(
    qtbot, make_window, photo_folder
):
    window = make_window(auto_index=False)
    panel = window.library_panel
    dialog = panel._choose_folder()
    pictures = [
        p
        for p in QStandardPaths.standardLocations(QStandardPaths.StandardLocation.PicturesLocation)
        if Path(p).is_dir()
    ]
    opened = Path(dialog.directory().absolutePath())
    assert opened == Path(pictures[0] if pictures else Path.home())
    assert opened != Path.cwd()  # before: the checkout, wherever the app was started
    with qtbot.waitSignal(panel.foldersChanged, timeout=10_000):
        dialog.fileSelected.emit(str(photo_folder))  # what choosing a folder sends
    dialog.reject()
    assert panel.folder_dialog is None or not panel.folder_dialog.isVisible()
    second = panel._choose_folder()
    assert Path(second.directory().absolutePath()) == photo_folder.parent
    second.reject()


def test_a_subfolder_of_a_library_folder_is_said_to_be_covered(
    qtbot, make_window, library, photo_folder
):
    library.add_root(photo_folder)
    window = make_window(auto_index=False)
    panel = window.library_panel
    with qtbot.waitSignal(panel.infoOccurred, timeout=5_000) as blocker:
        assert panel.add_folder(photo_folder / "a") == photo_folder
    assert f"inside {photo_folder}" in blocker.args[0] and "already covered" in blocker.args[0]
    assert window.message_bar.kind == "info" and "already covered" in window.message_bar.text()
    assert library.roots() == [photo_folder] and panel.folders.count() == 1
    with qtbot.waitSignal(panel.infoOccurred, timeout=5_000) as blocker:
        panel.add_folder(photo_folder)
    assert "already in the library" in blocker.args[0]
