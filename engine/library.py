"""A photo library: a folder of its own (its catalog) and the photo folders it covers.

One writer at a time (``writing``, engine.writer_lock): an indexing run holds the library's
writer lock, and a second one is told who holds it or waits. Searches need no lock. A library
whose catalog cannot be written opens read-only (``read_only``): it can be searched, and every
write says that it is read-only and what to do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.catalog import Catalog, Failure, storage_error
from engine.errors import LibraryError, LibraryReadOnlyError
from engine.paths import display_path, libraries_dir
from engine.writer_lock import LockHolder, WriterLock

log = logging.getLogger(__name__)

CATALOG_NAME = "catalog.sqlite"
SETTINGS_NAME = "settings.json"


@dataclass(frozen=True)
class LibraryStats:
    """Photo counts of a library, for one model (``Library.stats``)."""

    photos: int  # readable photos in the catalog
    failed: int  # files recorded as unreadable
    coded: int  # photos with a code for the model asked about (0 when none was named)
    uncoded: int = 0  # readable photos without one: a search with that model does not see them


def check_photo_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as an absolute path if it can be added to a library (it exists, is a folder
    and can be read); else ``LibraryError`` saying which. Touches no library, so a command can
    refuse a mistyped folder before it creates anything."""
    path = Path(folder).expanduser()
    shown = display_path(path)
    if not path.exists():
        raise LibraryError(f"The folder {shown} does not exist.")
    if not path.is_dir():
        raise LibraryError(f"{shown} is a file, not a folder; add the folder that holds it.")
    if not os.access(path, os.R_OK | os.X_OK):
        raise LibraryError(f"The folder {shown} cannot be read (permission denied).")
    return path.resolve()


class Library:
    """``read_only``: None opens read-only only when the catalog cannot be written."""

    def __init__(
        self, path: str | os.PathLike | None = None, *, read_only: bool | None = None
    ) -> None:
        self.path = Path(path) if path is not None else libraries_dir() / "default"
        if not self.path.is_dir():
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise storage_error(exc, "creating the library folder", self.path) from exc
        self.catalog = Catalog(self.path / CATALOG_NAME, read_only=read_only)
        self._writer_thread: int | None = None  # the thread of this object that holds the lock
        self._writer_depth = 0

    @property
    def read_only(self) -> bool:
        """True when the catalog cannot be written: searching works, changes do not."""
        return self.catalog.read_only

    @contextmanager
    def writing(
        self,
        purpose: str = "indexing",
        *,
        wait: float | None = 0.0,
        on_wait: Callable[[LockHolder | None], None] | None = None,
    ) -> Iterator[LockHolder | None]:
        """Hold the library's single-writer lock for the block (re-entrant in one thread).

        If another process holds it (or another thread of this one), wait up to ``wait``
        seconds (None: until it is free), calling ``on_wait(holder)`` once, then raise
        ``LibraryBusyError``, whose message says who holds it. Yields the record of a crashed
        writer whose lock was taken over, else None."""
        if self.read_only:
            raise LibraryReadOnlyError(
                f"The library {display_path(self.path)} is read-only, so {purpose} is not "
                "possible. It can still be searched; to change it, make its folder and catalog "
                "writable (or mount the disk read-write)."
            )
        me = threading.get_ident()
        if self._writer_thread == me:
            self._writer_depth += 1
            try:
                yield None
            finally:
                self._writer_depth -= 1
            return
        lock = WriterLock(self.path)
        try:
            lock.acquire(purpose, wait, on_wait)
        except OSError as exc:
            raise storage_error(exc, f"locking the library for {purpose}", lock.path) from exc
        self._writer_thread, self._writer_depth = me, 1
        try:
            yield lock.took_over
        finally:
            self._writer_thread, self._writer_depth = None, 0
            lock.release()

    def roots(self) -> list[Path]:
        """The photo folders the library covers."""
        return [p for _, p in self.catalog.roots()]

    def add_root(self, folder: str | os.PathLike) -> Path:
        """Add a photo folder; it must exist and be readable. Returns its absolute path, or the
        library's folder that already holds it (``covering``)."""
        path = check_photo_folder(folder)
        if (existing := self.covering(path)) is not None:
            log.info("%s is already covered by %s", path, existing)
            return existing
        self.catalog.add_root(path)
        return path

    def covering(self, folder: str | os.PathLike) -> Path | None:
        """The library's folder that is ``folder`` or holds it (its photos are indexed with
        it), or None."""
        path = Path(folder).expanduser().resolve()
        for existing in self.roots():
            if path == existing or existing in path.parents:
                return existing
        return None

    def remove_root(self, folder: str | os.PathLike) -> int:
        """Forget a folder and everything indexed under it; the files themselves are untouched.
        Not while another process indexes the library (``LibraryBusyError``)."""
        path = Path(folder).expanduser()
        path = path.resolve() if path.exists() else path.absolute()
        with self.writing("removing a folder"):
            return self.catalog.remove_root(path)

    def failures(self) -> list[Failure]:
        """Files the library could not use, with the reasons (``Catalog.failures``)."""
        return self.catalog.failures()

    def stats(self, model_id: str | None = None) -> LibraryStats:
        """Readable, failed, coded and not yet coded photos (coded: for ``model_id``)."""
        coded = len(self.catalog.coded_ids(model_id)) if model_id else 0
        return LibraryStats(
            photos=self.catalog.photo_count("ok"),
            failed=self.catalog.photo_count("failed"),
            coded=coded,
            uncoded=self.catalog.uncoded_count(model_id) if model_id else 0,
        )

    # ---------------------------------------------------------------- settings
    def _settings(self) -> dict:
        try:
            return json.loads((self.path / SETTINGS_NAME).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("Ignoring unreadable library settings: %s", exc)
            return {}

    def get_setting(self, key: str, default=None):
        """A value of the library's settings file (e.g. the active model)."""
        return self._settings().get(key, default)

    def set_setting(self, key: str, value) -> None:
        """Store a JSON value (e.g. the active model) atomically beside the catalog."""
        settings = self._settings()
        settings[key] = value
        tmp = self.path / (SETTINGS_NAME + ".tmp")
        try:
            tmp.write_text(json.dumps(settings, indent=1))
            os.replace(tmp, self.path / SETTINGS_NAME)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise storage_error(exc, "saving the library's settings", tmp) from exc

    def close(self) -> None:
        """Close the library's catalog."""
        self.catalog.close()
