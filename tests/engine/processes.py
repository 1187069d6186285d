"""Work for the second process of the multi-process catalog and library tests. A module of its
own, importing little, so a spawned child starts fast: it imports this, not the test module."""

from __future__ import annotations

import time


def open_new_catalog(path: str, barrier, results) -> None:
    """Open (and so create) the catalog as soon as every process is ready; report the outcome."""
    from engine.catalog import Catalog

    barrier.wait()
    try:
        Catalog(path).close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which shows it
        results.put(f"{type(exc).__name__}: {exc}")


def hold_writer(library: str, ready, release, photo: str | None = None) -> None:
    """Hold the library's writer lock until ``release`` is set; with ``photo``, also keep a
    write transaction open that adds that photo (committed on release), as an indexing batch
    does while it is being written."""
    from engine.library import Library

    lib = Library(library)
    with lib.writing("indexing"):
        if photo is None:
            ready.set()
            release.wait(120)
            return
        root_id = lib.catalog.roots()[0][0]
        with lib.catalog.transaction("indexing") as tx:
            lib.catalog.upsert_photo(tx, photo, root_id, 1, time.time_ns(), None)
            ready.set()
            release.wait(120)
    lib.close()
