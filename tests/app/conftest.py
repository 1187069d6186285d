"""Fixtures for the GUI tests: offscreen Qt, a private SKETCH_SEARCH_HOME, a small folder of real
Sketchy photos, a fast model, and a check that no worker thread outlives its test."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, QThreadPool

from engine.library import Library
from engine.store import create_fresh
from tests.shared_data import SHARED_DATA, missing_reason

N_PHOTOS = 40


def shared_or_skip(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(missing_reason(path))
    return path


def answer_remove(panel, remove: bool = True) -> str:
    """Answer the Library panel's Remove question (its non-blocking box) with a click; return
    the question asked."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QMessageBox

    box = panel.confirm_box
    assert box is not None and box.isVisible(), "Remove did not ask"
    question = box.text()
    if remove:
        button = next(b for b in box.buttons() if b.text() == "Remove")
    else:
        button = box.button(QMessageBox.StandardButton.Cancel)
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)
    return question


@pytest.fixture(autouse=True)
def sketch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SKETCH_SEARCH_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def no_threads_left():
    """Fail the test if a Qt pool thread or a Python thread it started is still running."""
    before = set(threading.enumerate())
    yield
    pool = QThreadPool.globalInstance()
    assert pool.activeThreadCount() == 0, "a worker on the global thread pool is still running"
    leftover = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not isinstance(t, threading._DummyThread)
    ]
    for thread in leftover:
        thread.join(timeout=5)  # executor threads exit right after their pool is shut down
    alive = [t.name for t in leftover if t.is_alive()]
    assert not alive, f"threads left running: {alive}"


@pytest.fixture(scope="session")
def model():
    """Pretrained trunk, untrained hash head: meaningless rankings, real plumbing."""
    return create_fresh("baseline", bits=64, image_size=96)


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """~40 real photos from varied Sketchy classes, in two sub-folders."""
    source = shared_or_skip("sketchy", "photos")
    photos = sorted(source.glob("*/*.jpg"))[::61][:N_PHOTOS]
    root = tmp_path / "photos"
    for i, photo in enumerate(photos):
        sub = root / ("b" if i % 2 else "a")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, sub / f"{photo.parent.name}_{photo.name}")
    return root


@pytest.fixture
def library(tmp_path):
    lib = Library(tmp_path / "library")
    yield lib
    lib.close()


@pytest.fixture
def settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_window(qtbot, library, model, settings):
    """Build a MainWindow with the test library/model; it is closed (threads joined) after."""
    from app.gui.main_window import MainWindow

    windows = []

    def make(auto_index: bool = True, **kwargs) -> MainWindow:
        window = MainWindow(
            library=library, model=model, settings=settings, auto_index=auto_index, **kwargs
        )
        window.models.index_job.batch_size = 8
        qtbot.addWidget(window)
        windows.append(window)
        with qtbot.waitSignal(window.models.modelChanged, timeout=60_000):
            pass
        return window

    yield make
    for window in windows:
        window.close()
        assert window.runner.running() == 0
        assert window.thumbnails.active_threads() == 0


@pytest.fixture
def wait_for_index(qtbot):
    """Wait until a window's running index job has finished; return its last progress."""

    def wait(window, timeout: int = 120_000):
        if not window.models.index_job.is_running():
            return None
        with qtbot.waitSignal(window.models.index_job.finished, timeout=timeout) as blocker:
            pass
        return blocker.args[0]

    return wait
