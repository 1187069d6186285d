"""One background job that follows the newest request: debounced, one run at a time, and an
answer for an older request dropped when a newer one exists (the newest is run next).

Search as you draw (``app.gui.search.controller``) and "what the model imagines"
(``app.gui.search.imagine_view``) both follow the sketch this way. Every ``request()`` bumps a
generation counter; after the debounce, ``make_call()`` says what to run for the newest request (a
function of no arguments) or None when there is nothing to run (the owner shows why). Only one
call runs at a time on the ``JobRunner``; when it finishes and a newer request came meanwhile, the
newest is run next. So the answer of an older request never overwrites that of a newer one,
however long a run takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal

from app.gui.workers import JobRunner

log = logging.getLogger(__name__)

DEBOUNCE_MS = 200


class NewestJob(QObject):
    returned = Signal(object)  # what the call of the newest request returned
    errored = Signal(object)  # the exception the call of the newest request raised

    def __init__(
        self,
        runner: JobRunner,
        make_call: Callable[[], Callable[[], object] | None],
        parent: QObject | None = None,
        debounce_ms: int = DEBOUNCE_MS,
    ) -> None:
        super().__init__(parent)
        self._runner = runner
        self._make_call = make_call
        self.generation = 0
        self.started = 0  # calls started so far
        self._running: int | None = None  # the generation of the call running
        self._timer = QTimer(self, singleShot=True, interval=debounce_ms)
        self._timer.timeout.connect(self._start)

    def request(self, debounce: bool = True) -> None:
        """Something the answer depends on changed: run again, after the debounce or now."""
        self.generation += 1
        if debounce:
            self._timer.start()
        else:
            self._timer.stop()
            self._start()

    def is_busy(self) -> bool:
        return self._running is not None or self._timer.isActive()

    def _start(self) -> None:
        if self._running is not None:
            return  # the running call's answer will be stale; the newest runs after it
        call = self._make_call()
        if call is None:
            return
        generation = self._running = self.generation
        self.started += 1
        slots = {
            "returned": lambda value: self._on_returned(generation, value),
            "errored": lambda exc: self._on_errored(generation, exc),
            "finished": self._on_finished,
        }
        self._runner.run_function(call, on=slots)

    def _on_returned(self, generation: int, value: object) -> None:
        if generation != self.generation:
            log.debug("Dropping the answer of request %d; %d is newer", generation, self.generation)
            return
        self.returned.emit(value)

    def _on_errored(self, generation: int, exc: BaseException) -> None:
        if generation == self.generation:
            self.errored.emit(exc)

    def _on_finished(self) -> None:
        finished, self._running = self._running, None
        if finished != self.generation and not self._timer.isActive():
            self._start()


__all__ = ["NewestJob"]
