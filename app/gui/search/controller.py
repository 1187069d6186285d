"""Search as you draw: debounce sketch changes, search off the GUI thread, drop stale answers.

The newest-request-wins job is ``app.gui.search.newest_job.NewestJob``: a search is started
(debounced) for the newest sketch only; at most one search runs at a time, and when it returns, its
answer is shown only if no newer sketch exists, otherwise the newest sketch is searched next. So
results of an older sketch never overwrite those of a newer one, however long a search takes. A
photo query (``PhotoQuery``) is searched with ``Searcher.search_photo``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.gui.search.canvas import PhotoQuery
from app.gui.search.newest_job import DEBOUNCE_MS, NewestJob
from app.gui.workers import JobRunner
from engine.defaults import DEFAULT_EXPAND

if TYPE_CHECKING:
    from engine.searcher import Searcher

log = logging.getLogger(__name__)


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
        self._query_source = query_source  # returns the current query, or None when empty
        self._searcher: Searcher | None = None
        self.count = 50
        self.rerank = False  # re-order the Hamming shortlist by the model's exact distance
        self.expand = DEFAULT_EXPAND  # query expansion over this many nearest photos
        self.refresh_only = False  # nothing but the library changed since the results shown
        self._job = NewestJob(runner, self._search_call, self, debounce_ms)
        self._job.returned.connect(self.resultsReady)
        self._job.errored.connect(self.searchFailed)

    @property
    def searcher(self) -> Searcher | None:
        return self._searcher

    @property
    def searches_started(self) -> int:
        return self._job.started

    def set_searcher(self, searcher: Searcher | None, *, rerank: bool | None = None) -> None:
        """Search with ``searcher`` from now on (and with ``rerank``, unless None), at once."""
        self._searcher = searcher
        if rerank is not None:
            self.rerank = bool(rerank)
        self.sketch_changed(debounce=False)

    def set_count(self, count: int) -> None:
        if count != self.count:
            self.count = count
            self.sketch_changed(debounce=False)

    def set_rerank(self, on: bool) -> None:
        if bool(on) != self.rerank:
            self.rerank = bool(on)
            self.sketch_changed(debounce=False)

    def set_expand(self, neighbours: int) -> None:
        if int(neighbours) != self.expand:
            self.expand = int(neighbours)
            self.sketch_changed(debounce=False)

    def is_busy(self) -> bool:
        return self._job.is_busy()

    def sketch_changed(self, debounce: bool = True) -> None:
        """The sketch (or what to search it in) changed: search again soon."""
        self.refresh_only = False
        self._job.request(debounce)

    def library_changed(self) -> None:
        """Only the photos changed (newly indexed ones became searchable): search again; the
        answer comes with ``refresh_only`` true, so the window may hold it back while a person
        is looking at the results."""
        if not self.is_busy():  # a search for a new sketch pending: its answer is new anyway
            self.refresh_only = True
        self._job.request(False)

    def _search_call(self) -> Callable[[], object] | None:
        query = self._query_source()
        if query is None:
            self.cleared.emit()
            return None
        if self._searcher is None:
            return None
        if isinstance(query, PhotoQuery):  # "more like this photo": the photo encoder
            photo = query.path if query.path is not None and query.path.is_file() else query.image
            return partial(self._searcher.search_photo, photo, self.count)
        return partial(
            self._searcher.search, query, self.count, rerank=self.rerank, expand=self.expand
        )
