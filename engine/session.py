"""The active model of a library and keeping it searchable: what the app's model picker and
indexing run (off the GUI thread), Qt-free.

- ``activate_model(library, spec)``: load a model (``engine.store.load_model``; "" is the shipped
  default) and build its ``Searcher`` from the catalog's codes, as an ``ActiveModel``;
- ``index_and_refresh(library, model, searcher, cancel)``: index the library for the model
  (``engine.indexer.index_library``), refreshing the searcher every ``REFRESH_EVERY_S`` while
  encoding and at the end, so new photos become searchable as they are encoded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.library import Library

if TYPE_CHECKING:  # torch and the networks: imported by the work itself, when it runs
    from engine.indexer import IndexProgress
    from engine.models import SketchHashModel
    from engine.searcher import Searcher

REFRESH_EVERY_S = 1.5  # while encoding, make new codes searchable this often


@dataclass(frozen=True)
class ActiveModel:
    """A loaded model with its searcher over the library's codes."""

    model: SketchHashModel
    searcher: Searcher
    spec: str  # how to load it again: "" = shipped default, a method name or a checkpoint path


def activate_model(
    library: Library, spec: str, model: SketchHashModel | None = None
) -> ActiveModel:
    """Load the model (unless given) and build its searcher from the catalog's codes."""
    from engine.devices import threads_beside_gui
    from engine.searcher import Searcher  # heavy imports (torch): not before they are needed
    from engine.store import load_model

    if model is None:
        model = load_model(spec or None)
    # the app's searches leave a core to its GUI thread, which paints the stroke being drawn
    searcher = Searcher(library, model, query_threads=threads_beside_gui())
    searcher.warm_up()  # on the loading thread: the first sketch does not wait for it
    return ActiveModel(model, searcher, spec)


@dataclass(frozen=True)
class IndexUpdate:
    """An indexing progress event, and after the run how many photos the refreshed searcher sees."""

    progress: IndexProgress
    refreshed: int | None  # photos now searchable, when the searcher was refreshed


def index_and_refresh(
    library: Library,
    model: SketchHashModel,
    searcher: Searcher | None,
    cancel: threading.Event,
    batch_size: int = 32,
) -> Iterator[IndexUpdate]:
    """Index the library for ``model``; refresh ``searcher`` now and then, and at the end."""
    from engine.indexer import index_library

    last_refresh = time.monotonic()
    for progress in index_library(library, model, batch_size=batch_size, cancel=cancel):
        refreshed = None
        final = progress.phase in ("done", "cancelled")
        due = progress.encoded and time.monotonic() - last_refresh > REFRESH_EVERY_S
        if searcher is not None and (final or due):
            refreshed = searcher.refresh()
            last_refresh = time.monotonic()
        yield IndexUpdate(progress, refreshed)
