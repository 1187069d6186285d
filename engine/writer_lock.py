"""One writer per library: a lock file that says who holds it.

``<library>/writer.lock`` is locked with the operating system's file lock (``flock`` on POSIX,
``msvcrt.locking`` on Windows, not tested here) while a writer, an indexing run, holds the
library. It holds the writer's pid, host, purpose and start time as JSON, for the message that
the next writer gets (``LibraryBusyError``), which may also wait for the lock instead.

The operating system drops the lock when its process ends, however it ends, so a crashed writer
never blocks the library: the next writer gets the lock, finds the record the crashed one left
(a clean release empties the file), logs that it takes over from it, and writes its own.
Searches take no lock: SQLite's WAL lets them read while the writer writes.

On a file system without file locks (some network shares) the lock is skipped with a warning.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from engine.errors import LibraryBusyError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

log = logging.getLogger(__name__)

LOCK_NAME = "writer.lock"
POLL_S = 0.25
_WINDOWS_LOCK_OFFSET = 1 << 30  # lock a byte past the record, so others can still read it
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    since: float  # time.time() when it took the lock
    purpose: str  # e.g. "indexing"

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"process {self.pid} on {self.host} ({self.purpose} since {when})"


def _read_holder(handle: IO[str]) -> LockHolder | None:
    try:
        handle.seek(0)
        record = json.loads(handle.read() or "null")
        if record is None:
            return None
        return LockHolder(
            int(record["pid"]), str(record["host"]), float(record["since"]), str(record["purpose"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # empty, or cut short while being written


def _try_lock(handle: IO[str]) -> bool:
    """Take the OS lock without waiting; False if another holder has it."""
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            handle.seek(_WINDOWS_LOCK_OFFSET)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except BlockingIOError:
        return False
    except PermissionError:  # Windows: the region is locked
        return False
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN, errno.EDEADLK):
            return False
        raise
    return True


def _unlock(handle: IO[str]) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    else:
        handle.seek(_WINDOWS_LOCK_OFFSET)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)


def busy_message(library: Path, holder: LockHolder | None) -> str:
    who = holder.describe() if holder else "another process"
    return (
        f"The library {library} is busy: {who} is writing to it. Wait until it has finished "
        "(or stop it), then try again."
    )


class WriterLock:
    """The OS lock on one library's lock file; one instance per acquisition."""

    def __init__(self, library: Path) -> None:
        self.library = library
        self.path = library / LOCK_NAME
        self.took_over: LockHolder | None = None  # a crashed writer's record, when there was one
        self._handle: IO[str] | None = None

    def acquire(
        self,
        purpose: str,
        wait: float | None = 0.0,
        on_wait: Callable[[LockHolder | None], None] | None = None,
    ) -> None:
        """Take the lock; if another process holds it, wait up to ``wait`` seconds (None: as
        long as it takes), calling ``on_wait(holder)`` once, then raise ``LibraryBusyError``."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        handle = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            self._wait_for_lock(handle, wait, on_wait)
        except BaseException:
            handle.close()
            raise
        self.took_over = _read_holder(handle)
        if self.took_over is not None:
            log.warning(
                "Taking over the library %s from %s, which stopped without releasing it "
                "(it crashed or was killed); what it had saved is kept.",
                self.library,
                self.took_over.describe(),
            )
        mine = LockHolder(os.getpid(), socket.gethostname(), time.time(), purpose)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(asdict(mine)))
        handle.flush()
        self._handle = handle

    def _wait_for_lock(
        self,
        handle: IO[str],
        wait: float | None,
        on_wait: Callable[[LockHolder | None], None] | None,
    ) -> None:
        deadline = None if wait is None else time.monotonic() + wait
        told = False
        while True:
            try:
                if _try_lock(handle):
                    return
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    raise
                log.warning(
                    "%s cannot be locked on this file system (%s); two writers at once are not "
                    "prevented here.",
                    self.path,
                    exc.strerror,
                )
                return
            holder = _read_holder(handle)
            if deadline is not None and time.monotonic() >= deadline:
                raise LibraryBusyError(busy_message(self.library, holder), holder)
            if not told and on_wait is not None:
                on_wait(holder)
                told = True
            time.sleep(POLL_S)

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            handle.seek(0)
            handle.truncate()  # an empty file: released cleanly, nobody to take over from
            handle.flush()
            _unlock(handle)
        except OSError as exc:
            log.warning("Could not clear %s: %s", self.path, exc)
        finally:
            handle.close()  # also drops the OS lock
