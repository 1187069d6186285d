"""The desktop app (PySide6). ``run_gui(argv)`` is what ``sketch-search`` with no arguments runs.

Once the event loop has shown the main window, ``run_gui`` logs one INFO line starting with
``READY_MESSAGE`` (with the PySide6, Qt and Python versions): the packaging smoke test (and a
person timing a cold start) waits for it. A Qt binding known to crash the app
(``app.gui.binding_check``) is refused before any window opens: exit status ``EXIT_CANNOT_START``;
so is a Linux machine where Qt could not open a window (no display, or the X11 plugin's system
libraries missing: ``app.gui.display_check``), with what to install, before Qt would abort.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

__all__ = ["READY_MESSAGE", "run_gui"]

READY_MESSAGE = "SketchSearch ready"
EXIT_CANNOT_START = 3


def _report_ready(window, started: float) -> None:
    """Called by the event loop's first turn, after the window was shown; then the model loads."""
    from app.gui.binding_check import versions

    if not window.isVisible():
        log.warning("The main window is not visible after start-up.")
        window.start_model()
        return
    log.info(
        "%s: main window shown (%dx%d, %.2f s after the app was created; %s)",
        READY_MESSAGE,
        window.width(),
        window.height(),
        time.perf_counter() - started,
        versions(),
    )
    window.start_model()  # torch is imported on a worker thread from here on


def _refuse_to_start(problem: str) -> int:
    """Say why the app cannot run: on stderr, and in a dialog where there is a screen."""
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QMessageBox

    log.error("SketchSearch cannot start: %s", problem)
    if QGuiApplication.platformName() not in ("offscreen", "minimal"):
        QMessageBox.critical(None, "SketchSearch cannot start", problem)
    return EXIT_CANNOT_START


def run_gui(argv: Sequence[str] | None = None) -> int:
    """Build the application and the main window, run the event loop, return its exit code."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.gui.binding_check import binding_problem
    from app.gui.display_check import display_problem
    from app.gui.errors import CrashHandler
    from app.gui.main_window import MainWindow

    started = time.perf_counter()
    if QApplication.instance() is None and (problem := display_problem()):
        log.error("SketchSearch cannot start: %s", problem)  # Qt would abort (core dump)
        return EXIT_CANNOT_START
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    app.setApplicationName("SketchSearch")
    app.setOrganizationName("SketchSearch")
    if problem := binding_problem():  # a crash after a few sketches otherwise
        return _refuse_to_start(problem)
    window = MainWindow(start_model=False)
    crash_handler = CrashHandler(window.crashReported.emit)
    crash_handler.install()
    window.show()
    QTimer.singleShot(0, lambda: _report_ready(window, started))
    try:
        return app.exec()
    finally:
        window.shutdown()  # when the loop was quit without closing the window
        crash_handler.uninstall()
