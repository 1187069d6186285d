"""A Qt binding that would crash the app (PySide6 6.12.0 on Python 3.11 loses a reference to None
on every call that returns nothing) is found by its behaviour and refused at start-up."""

from __future__ import annotations

import logging
import sys

from PySide6.QtWidgets import QApplication

from app.gui import EXIT_CANNOT_START, run_gui
from app.gui.binding_check import binding_problem, none_references_lost, versions
from app.gui.main_window import MainWindow


def test_the_installed_binding_keeps_its_references_to_none():
    # fails on PySide6 6.12.0 with Python 3.11 (64 of 64 lost), which pyproject.toml keeps out
    assert none_references_lost() == 0
    assert binding_problem() is None
    assert versions().startswith("PySide6 ") and f"Python {sys.version_info[0]}." in versions()


def test_run_gui_refuses_a_faulty_binding_before_any_window(qtbot, monkeypatch, caplog):
    problem = "PySide6 9.9 on Python 3.11 loses a reference to None on every Qt call (test)."
    monkeypatch.setattr("app.gui.binding_check.binding_problem", lambda: problem)
    with caplog.at_level(logging.ERROR, logger="app.gui"):
        assert run_gui(["sketch-search"]) == EXIT_CANNOT_START
    assert [r.getMessage() for r in caplog.records] == [f"SketchSearch cannot start: {problem}"]
    assert not [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
