"""Thumbnails for the results grid: decoded off the GUI thread, cached on disk and in memory.

The disk cache lives under ``cache_dir()/thumbnails``; an entry is keyed by the photo's path, the
thumbnail size and the photo's mtime, so an edited photo gets a new thumbnail and stale entries are
simply never read again. Paths travel through signals as Python objects: a Qt string would drop
the bytes of a file name that is not valid UTF-8.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from engine.errors import SketchSearchError
from engine.images import load_photo
from engine.paths import cache_dir

log = logging.getLogger(__name__)

MEMORY_ITEMS = 600
DECODE_THREADS = 2


def thumbnail_cache_dir() -> Path:
    path = cache_dir() / "thumbnails"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_file(folder: Path, photo: Path, size: int) -> Path:
    """Where the thumbnail of ``photo`` at ``size`` is stored (depends on path, size and mtime)."""
    try:
        mtime = photo.stat().st_mtime_ns
    except OSError:
        mtime = 0
    key = hashlib.sha1(os.fsencode(photo) + f"|{size}|{mtime}".encode()).hexdigest()
    return folder / key[:2] / f"{key}.jpg"


def make_thumbnail(folder: Path, photo: Path, size: int) -> QImage:
    """Read the cached thumbnail or decode the photo and cache it; raises SketchSearchError."""
    target = cache_file(folder, photo, size)
    if target.is_file():
        image = QImage(str(target))
        if not image.isNull():
            return image
    picture = load_photo(photo, target_size=size)
    picture.thumbnail((size, size))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.save(target, "JPEG", quality=88)
    except OSError as exc:  # a full or read-only cache only costs speed
        log.warning("Could not cache the thumbnail of %s: %s", photo, exc)
    data = picture.convert("RGB").tobytes()
    width, height = picture.size
    image = QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return image.copy()  # own the pixels: ``data`` goes away with this frame


class _Signals(QObject):
    ready = Signal(object, int, QImage)  # path str, size, image
    failed = Signal(object, int, str)


class _ThumbnailJob(QRunnable):
    def __init__(self, folder: Path, photo: Path, size: int, signals: _Signals) -> None:
        super().__init__()
        self._folder, self._photo, self._size, self._signals = folder, photo, size, signals

    def run(self) -> None:
        try:
            image = make_thumbnail(self._folder, self._photo, self._size)
        except SketchSearchError as exc:
            self._signals.failed.emit(str(self._photo), self._size, str(exc))
        except Exception as exc:  # a worker must never die silently; the grid shows the reason
            log.exception("Thumbnail of %s failed", self._photo)
            self._signals.failed.emit(str(self._photo), self._size, f"{exc!r}")
        else:
            self._signals.ready.emit(str(self._photo), self._size, image)


class ThumbnailLoader(QObject):
    """Asks for thumbnails by (path, size); answers through ``ready`` / ``failed`` signals."""

    ready = Signal(object, int)  # path str, size: now available through ``get``
    failed = Signal(object, int, str)

    def __init__(self, parent: QObject | None = None, folder: Path | None = None) -> None:
        super().__init__(parent)
        self._folder = folder or thumbnail_cache_dir()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(DECODE_THREADS)
        self._memory: OrderedDict[tuple[str, int], QImage] = OrderedDict()
        self._errors: dict[tuple[str, int], str] = {}
        self._pending: set[tuple[str, int]] = set()
        self._signals = _Signals(self)
        self._signals.ready.connect(self._on_ready)
        self._signals.failed.connect(self._on_failed)

    def get(self, path: str | Path, size: int) -> QImage | None:
        """The thumbnail if it is in memory; otherwise None and it is requested."""
        key = (str(path), size)
        image = self._memory.get(key)
        if image is not None:
            self._memory.move_to_end(key)
            return image
        if key not in self._pending and key not in self._errors:
            self._pending.add(key)
            self._pool.start(_ThumbnailJob(self._folder, Path(path), size, self._signals))
        return None

    def error(self, path: str | Path, size: int) -> str | None:
        return self._errors.get((str(path), size))

    def cancel_pending(self) -> None:
        """Drop requests not started yet (e.g. the results changed)."""
        self._pool.clear()
        self._pending.clear()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        self.cancel_pending()
        return self._pool.waitForDone(timeout_ms)

    def active_threads(self) -> int:
        return self._pool.activeThreadCount()

    def _on_ready(self, path: str, size: int, image: QImage) -> None:
        key = (path, size)
        self._pending.discard(key)
        self._memory[key] = image
        while len(self._memory) > MEMORY_ITEMS:
            self._memory.popitem(last=False)
        self.ready.emit(path, size)

    def _on_failed(self, path: str, size: int, message: str) -> None:
        key = (path, size)
        self._pending.discard(key)
        self._errors[key] = message
        self.failed.emit(path, size, message)
