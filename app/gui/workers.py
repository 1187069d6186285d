"""Running blocking engine work off the GUI thread, and knowing what is still running.

Engine calls are plain functions and generators (the model and indexing ones are in
``engine.session``); superqt's workers run them on the global
QThreadPool and turn yields, returns and exceptions into signals. ``JobRunner`` keeps a reference
to every worker it started (so none is garbage-collected mid-run), cancels them all and waits for
them when the window closes.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThreadPool, Signal

from engine.errors import SketchSearchError
from engine.library import Library

if TYPE_CHECKING:  # imported by the work itself, off the GUI thread, after the window shows
    from superqt.utils import WorkerBase

    from engine.indexer import IndexProgress
    from engine.models import SketchHashModel
    from engine.searcher import Searcher
    from engine.session import IndexUpdate

log = logging.getLogger(__name__)

MIN_POOL_THREADS = 4  # indexing + a search + a model load must never wait for each other
Slots = dict[str, Callable]


class JobRunner(QObject):
    """Starts workers on the global thread pool and tracks them until they finish."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._workers: set[WorkerBase] = set()
        self._cancel_events: set[threading.Event] = set()
        pool = QThreadPool.globalInstance()
        pool.setMaxThreadCount(max(pool.maxThreadCount(), MIN_POOL_THREADS))

    def run_function(self, func: Callable, *args, on: Slots | None = None, **kwargs) -> None:
        """Run ``func(*args, **kwargs)``; ``on`` maps signal names (returned, errored, finished)
        to slots, connected before the worker starts so that no signal is missed."""
        from superqt.utils import FunctionWorker  # half a second to import: not before needed

        self._start(FunctionWorker(func, *args, **kwargs), on or {})

    def run_generator(self, func: Callable, *args, on: Slots | None = None, **kwargs) -> None:
        """Like run_function for a generator function; ``on`` may also name ``yielded``."""
        self._start(_closing_generator_worker()(func, *args, **kwargs), on or {})

    def running(self) -> int:
        return len(self._workers)

    def track_cancel(self, event: threading.Event) -> None:
        self._cancel_events.add(event)

    def untrack_cancel(self, event: threading.Event) -> None:
        self._cancel_events.discard(event)

    def cancel_all(self) -> None:
        for event in self._cancel_events:
            event.set()
        for worker in list(self._workers):
            worker.quit()

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until every worker thread has finished; False if the timeout ran out."""
        done = QThreadPool.globalInstance().waitForDone(timeout_ms)
        if done:
            self._workers.clear()  # their queued ``finished`` signals may not be delivered yet
        else:
            log.warning("Workers still running after %d ms", timeout_ms)
        return done

    def _start(self, worker: WorkerBase, slots: Slots) -> None:
        self._workers.add(worker)
        for name, slot in slots.items():
            getattr(worker, name).connect(slot)
        worker.finished.connect(lambda: self._workers.discard(worker))
        # started directly (not through worker.start(), which may defer by a timer tick), so
        # that wait() right after never misses a worker that is about to start
        QThreadPool.globalInstance().start(worker)


@functools.cache
def _closing_generator_worker() -> type[WorkerBase]:
    """superqt's GeneratorWorker, closing its generator when it stops (superqt imported here,
    when first needed)."""
    from superqt.utils import GeneratorWorker

    class ClosingGeneratorWorker(GeneratorWorker):
        """Stopped by quit() between two yields, superqt's worker leaves its generator open, so
        the generator's finally blocks (the indexer's decode pool shutdown) waited for the
        garbage collector and its threads outlived the job. Closed here, in the worker's
        thread, as soon as the work ends."""

        def work(self):
            try:
                return super().work()
            finally:
                self._gen.close()

    return ClosingGeneratorWorker


def _index_and_refresh(*args) -> Iterator[IndexUpdate]:
    """``engine.session.index_and_refresh`` for a superqt worker."""
    from engine.session import index_and_refresh

    try:
        yield from index_and_refresh(*args)
    except RuntimeError as exc:
        # superqt's generator worker takes a RuntimeError for its own deletion and then emits
        # neither ``errored`` nor ``finished``: the job would look busy for ever
        raise SketchSearchError(
            f"The indexer failed ({exc}); please report this as a SketchSearch bug."
        ) from exc


class IndexJob(QObject):
    """One indexing run at a time: start, cancel, and its progress as signals."""

    progressed = Signal(object)  # IndexUpdate
    finished = Signal(object)  # the last IndexProgress (phase "done" or "cancelled") or None
    failed = Signal(object)  # the exception

    def __init__(self, runner: JobRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._runner = runner
        self._cancel: threading.Event | None = None
        self._last: IndexProgress | None = None
        self.batch_size = 32
        self.model: SketchHashModel | None = None  # the model of the running (or last) run

    def is_running(self) -> bool:
        return self._cancel is not None

    @property
    def last(self) -> IndexProgress | None:
        """The latest progress of the running or last run (None before its first)."""
        return self._last

    def start(self, library: Library, model: SketchHashModel, searcher: Searcher | None) -> bool:
        if self.is_running():
            return False
        self._cancel = cancel = threading.Event()
        self._runner.track_cancel(cancel)
        self._last = None
        self.model = model
        slots = {
            "yielded": self._on_yielded,
            "errored": self.failed.emit,
            "finished": self._on_finished,
        }
        self._runner.run_generator(
            _index_and_refresh, library, model, searcher, cancel, self.batch_size, on=slots
        )
        return True

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def _on_yielded(self, update: IndexUpdate) -> None:
        self._last = update.progress
        self.progressed.emit(update)

    def _on_finished(self) -> None:
        if self._cancel is not None:
            self._runner.untrack_cancel(self._cancel)
        self._cancel = None
        self.finished.emit(self._last)
