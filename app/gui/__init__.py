"""The desktop app (PySide6). ``run_gui(argv)`` is what ``sketch-search`` with no arguments runs.

Once the event loop has shown the main window, ``run_gui`` logs one INFO line starting with
``READY_MESSAGE``: the packaging smoke test (and a person timing a cold start) waits for it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

__all__ = ["READY_MESSAGE", "run_gui"]

READY_MESSAGE = "SketchSearch ready"


def _report_ready(window, started: float) -> None:
    """Called by the event loop's first turn, after the window was shown."""
    if not window.isVisible():
        log.warning("The main window is not visible after start-up.")
        return
    log.info(
        "%s: main window shown (%dx%d, %.2f s after the app was created)",
        READY_MESSAGE,
        window.width(),
        window.height(),
        time.perf_counter() - started,
    )


def run_gui(argv: Sequence[str] | None = None) -> int:
    """Build the application and the main window, run the event loop, return its exit code."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.gui.errors import CrashHandler
    from app.gui.main_window import MainWindow

    started = time.perf_counter()
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    app.setApplicationName("SketchSearch")
    app.setOrganizationName("SketchSearch")
    window = MainWindow()
    crash_handler = CrashHandler(window.crashReported.emit)
    crash_handler.install()
    window.show()
    QTimer.singleShot(0, lambda: _report_ready(window, started))
    try:
        return app.exec()
    finally:
        window.shutdown()  # when the loop was quit without closing the window
        crash_handler.uninstall()
