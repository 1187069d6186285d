"""Search as you draw: debounce sketch changes, search off the GUI thread, drop stale answers.

Every change of the sketch bumps a generation counter. A search is started (debounced) for the
newest generation only; at most one search runs at a time, and when it returns, its answer is
shown only if no newer sketch exists, otherwise the newest sketch is searched next. So results of
an older sketch never overwrite those of a newer one, however long a search takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from PySide6.QtCore import QObject, QTimer, Signal

from app.gui.workers import JobRunner
from engine.searcher import Searcher, SearchResponse

log = logging.getLogger(__name__)

DEBOUNCE_MS = 200


class SearchController(QObject):
    resultsReady = Signal(object)  # SearchResponse of the newest sketch
    searchFailed = Signal(object)  # the exception
    cleared = Signal()  # the sketch is empty: nothing to search

    def __init__(
        self,
        runner: JobRunner,
        query_source: Callable[[], object],
        parent: QObject | None = None,
        debounce_ms: int = DEBOUNCE_MS,
    ) -> None:
        super().__init__(parent)
        self._runner = runner
        self._query_source = query_source  # returns the current query, or None when empty
        self._searcher: Searcher | None = None
        self.count = 50
        self.rerank = False  # re-order the Hamming shortlist by the model's exact distance
        self.generation = 0
        self._running_generation: int | None = None
        self.searches_started = 0
        self._timer = QTimer(self, singleShot=True, interval=debounce_ms)
        self._timer.timeout.connect(self._start_search)

    @property
    def searcher(self) -> Searcher | None:
        return self._searcher

    def set_searcher(self, searcher: Searcher | None) -> None:
        self._searcher = searcher
        self.sketch_changed(debounce=False)

    def set_count(self, count: int) -> None:
        if count != self.count:
            self.count = count
            self.sketch_changed(debounce=False)

    def set_rerank(self, on: bool) -> None:
        if bool(on) != self.rerank:
            self.rerank = bool(on)
            self.sketch_changed(debounce=False)

    def is_busy(self) -> bool:
        return self._running_generation is not None or self._timer.isActive()

    def sketch_changed(self, debounce: bool = True) -> None:
        """The sketch (or what to search it in) changed: search again soon."""
        self.generation += 1
        if debounce:
            self._timer.start()
        else:
            self._timer.stop()
            self._start_search()

    def _start_search(self) -> None:
        if self._running_generation is not None:
            return  # the running search's answer will be stale; the newest is searched after it
        query = self._query_source()
        if query is None:
            self.cleared.emit()
            return
        if self._searcher is None:
            return
        generation = self.generation
        self._running_generation = generation
        self.searches_started += 1
        slots = {
            "returned": lambda response: self._on_returned(generation, response),
            "errored": lambda exc: self._on_errored(generation, exc),
            "finished": self._on_finished,
        }
        search = partial(self._searcher.search, rerank=self.rerank)
        self._runner.run_function(search, query, self.count, on=slots)

    def _on_returned(self, generation: int, response: SearchResponse) -> None:
        if generation != self.generation:
            log.debug("Dropping results of sketch %d; %d is newer", generation, self.generation)
            return
        self.resultsReady.emit(response)

    def _on_errored(self, generation: int, exc: BaseException) -> None:
        if generation == self.generation:
            self.searchFailed.emit(exc)

    def _on_finished(self) -> None:
        finished = self._running_generation
        self._running_generation = None
        if finished != self.generation and not self._timer.isActive():
            self._start_search()
