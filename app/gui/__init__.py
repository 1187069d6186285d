"""The desktop app (PySide6). ``run_gui(argv)`` is what ``sketch-search`` with no arguments runs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

log = logging.getLogger(__name__)

__all__ = ["run_gui"]


def run_gui(argv: Sequence[str] | None = None) -> int:
    """Build the application and the main window, run the event loop, return its exit code."""
    from PySide6.QtWidgets import QApplication

    from app.gui.errors import CrashHandler
    from app.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    app.setApplicationName("SketchSearch")
    app.setOrganizationName("SketchSearch")
    window = MainWindow()
    crash_handler = CrashHandler(window.crashReported.emit)
    crash_handler.install()
    window.show()
    try:
        return app.exec()
    finally:
        window.shutdown()  # when the loop was quit without closing the window
        crash_handler.uninstall()
