"""``run_gui``: what ``sketch-search`` with no arguments runs, here with no model installed."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.gui import run_gui
from app.gui.main_window import MainWindow


def test_run_gui_starts_and_reports_a_missing_model(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr("engine.model_files.SHIPPED_DIR", tmp_path / "no-shipped-models")
    seen = {}
    tries = iter(range(400))  # 20 s, then close anyway so a regression fails instead of hanging

    def inspect_and_quit() -> None:
        (window,) = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
        if window.message_bar.isHidden() and next(tries, None) is not None:
            QTimer.singleShot(50, inspect_and_quit)  # the model load has not failed yet
            return
        seen["message"] = window.message_bar.text()
        seen["empty"] = window.results_view.empty_text
        window.close()

    QTimer.singleShot(0, inspect_and_quit)
    assert run_gui(["sketch-search"]) == 0
    assert "No default model is installed" in seen["message"], "the load error was not shown"
    assert "No model could be loaded" in seen["empty"]


def test_the_app_keeps_its_settings_where_tests_say(qtbot, isolated_settings, tmp_path):
    """Tests (and benchmarks) never write the user's ~/.config/SketchSearch: the app's settings
    file follows SKETCH_SEARCH_SETTINGS (tests/conftest.py sets it for every test)."""
    home_config = Path.home() / ".config" / "SketchSearch" / "SketchSearch.conf"
    before = home_config.stat().st_mtime_ns if home_config.exists() else None
    window = MainWindow(start_model=False)
    qtbot.addWidget(window)
    window.count_spin.setValue(77)
    window.close()  # saves the settings
    assert window.settings.fileName() == str(isolated_settings)
    assert "result_count=77" in isolated_settings.read_text()
    after = home_config.stat().st_mtime_ns if home_config.exists() else None
    assert after == before
