"""How errors reach the user: an inline, non-modal message bar, and a crash handler that logs
unhandled exceptions to ``logs_dir()/crash.log`` and tells the user where the log is."""

from __future__ import annotations

import datetime
import logging
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from engine.errors import SketchSearchError
from engine.paths import logs_dir

log = logging.getLogger(__name__)

CRASH_LOG_NAME = "crash.log"
INFO_HIDE_MS = 8000

_STYLES = {
    "error": "background: #fdecea; color: #611a15; border: 1px solid #f5c2c0;",
    "info": "background: #e8f4fd; color: #0d3c61; border: 1px solid #b6dcf7;",
}


def user_message(exc: BaseException) -> str:
    """The text to show for an error: engine errors already say what to do; others get a hint."""
    if isinstance(exc, SketchSearchError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc)
    return f"Unexpected error: {exc!r}. Details are in {crash_log_path()}."


class MessageBar(QWidget):
    """A strip above the main area that shows one message at a time and never blocks.

    An error may name its ``owner``: the state that caused it (the sketch, a model, the library
    folders). ``dismiss_owned`` takes it away when that state goes (the sketch changed, another
    model is active), so an error never stays beside results it does not belong to.
    """

    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self._label = QLabel()
        self._label.setWordWrap(True)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action_button = QPushButton()  # shown by show_offer only
        self.action_button.clicked.connect(self._run_action)
        self.action_button.hide()
        self._action: Callable[[], None] | None = None
        close_button = QPushButton("Dismiss")
        close_button.setFlat(True)
        close_button.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 4, 4)
        layout.addWidget(self._label, 1)
        layout.addWidget(self.action_button)
        layout.addWidget(close_button)
        self._hide_timer = QTimer(self, singleShot=True, interval=INFO_HIDE_MS)
        self._hide_timer.timeout.connect(self.dismiss)
        self.kind = ""
        self.owner: object = None  # what the error shown belongs to (None: nothing in particular)
        self.hide()

    def text(self) -> str:
        return self._label.text()

    def show_error(self, text: str, owner: object = None) -> None:
        log.info("Shown to the user: %s", text)
        self._show("error", text)
        self.owner = owner
        self._hide_timer.stop()

    def dismiss_owned(self, gone: Callable[[object], bool]) -> bool:
        """Dismiss the error shown if its owner is gone (``gone(owner)`` is true); True if so."""
        if self.isHidden() or self.kind != "error" or self.owner is None or not gone(self.owner):
            return False
        self.dismiss()
        return True

    def show_info(self, text: str) -> None:
        self._show("info", text)
        self._hide_timer.start()

    def show_offer(self, text: str, action_text: str, action: Callable[[], None]) -> None:
        """An info message with a button that does what it offers (and closes the bar); it
        stays until then or until dismissed."""
        self._show("info", text)
        self._hide_timer.stop()
        self.kind = "offer"
        self._action = action
        self.action_button.setText(action_text)
        self.action_button.show()

    def dismiss(self) -> None:
        self.hide()
        self.closed.emit()

    def _run_action(self) -> None:
        action = self._action
        self.dismiss()
        if action is not None:
            action()

    def _show(self, kind: str, text: str) -> None:
        self.owner = None
        self._action = None
        self.action_button.hide()
        self.kind = kind
        self.setStyleSheet(f"#messageBar {{ {_STYLES[kind]} border-radius: 4px; }}")
        self._label.setText(text)
        self.show()


def crash_log_path() -> Path:
    return logs_dir() / CRASH_LOG_NAME


def write_crash_log(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> Path:
    """Append one unhandled exception, with a timestamp, to the crash log; return its path."""
    path = crash_log_path()
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"--- {stamp}\n{text}\n")
    return path


class CrashHandler:
    """``sys.excepthook`` (and ``threading.excepthook``) that logs and shows, never exits."""

    def __init__(self, show: Callable[[str], None]) -> None:
        self._show = show
        self._previous_hooks = (sys.excepthook, threading.excepthook)

    def install(self) -> None:
        sys.excepthook = self.handle
        threading.excepthook = lambda args: self.handle(
            args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback
        )

    def uninstall(self) -> None:
        sys.excepthook, threading.excepthook = self._previous_hooks

    def handle(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            self._previous_hooks[0](exc_type, exc, tb)
            return
        log.error("Unhandled exception", exc_info=(exc_type, exc, tb))
        try:
            path = write_crash_log(exc_type, exc, tb)
        except OSError:
            log.exception("Could not write the crash log")
            path = None
        where = f" Details were written to {path}." if path else ""
        self._show(f"Something went wrong: {exc_type.__name__}: {exc}.{where}")
