"""Walking photo folders, and telling from what a walk saw which catalog entries are gone.

The rule, so that an unmounted drive or an unreadable folder loses nothing: a catalog entry is
removed only on positive evidence that its file is gone. Its root folder is readable and not
empty, no folder on the way to it failed to read, and asking for the file itself says that it
does not exist (ENOENT or ENOTDIR). Otherwise the entry is kept.

- A root that is missing, not a folder, unreadable, or empty while the catalog holds photos from
  it (an unmounted drive's mount point is an empty folder) is *unavailable* (``root_problem``):
  its entries are kept and the run says so. Removing the folder from the library
  (``Library.remove_root``: the app's Remove button, ``sketch-search remove``) is how a user
  forgets its photos on purpose.
- Paths the walk cannot use are *skipped* with a reason the user can act on (``SkippedPath``):
  unreadable folders, links that lead nowhere or back to themselves, paths longer than the
  system allows, photo-named things that are not regular files (a named pipe would block the
  decoder). The indexer stores them in the catalog, listed with the unreadable photos.
- Hidden folders and files (a leading dot) are not walked. Links to folders are not followed
  (``os.walk``'s default: no loops, no photo indexed twice); links to files are.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.images import PHOTO_EXTENSIONS
from engine.paths import display_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedPath:
    path: str
    reason: str
    folder: bool = False  # a folder the walk could not enter: entries under it are kept


def walk_photos(
    root: str | os.PathLike, skipped: list[SkippedPath] | None = None
) -> Iterator[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every photo file under root, in a stable order. Paths that
    cannot be used are logged and, when ``skipped`` is given, appended to it with a reason."""

    def skip(path: str, exc: OSError | None, folder: bool, reason: str | None = None) -> None:
        reason = reason or _reason(path, exc, folder)
        log.warning("Skipped %s: %s", display_path(path), reason)
        if skipped is not None:
            skipped.append(SkippedPath(path, reason, folder))

    def on_walk_error(exc: OSError) -> None:
        skip(os.fspath(exc.filename if exc.filename is not None else root), exc, True)

    for folder, dirs, files in os.walk(root, onerror=on_walk_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in PHOTO_EXTENSIONS:
                continue
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except FileNotFoundError as exc:
                if os.path.islink(path):
                    skip(path, exc, False)
                continue  # deleted while the folder was being read: simply gone
            except OSError as exc:
                skip(path, exc, False)
                continue
            if not stat.S_ISREG(st.st_mode):
                skip(path, None, False, "It is not a regular file (a device or a pipe), skipped.")
                continue
            yield path, st.st_size, st.st_mtime_ns


def _reason(path: str, exc: OSError | None, folder: bool) -> str:
    """Why a path was skipped, and what to do about it."""
    code = exc.errno if exc is not None else None
    kept = " Photos indexed from it before are kept." if folder else ""
    if code == errno.ELOOP:
        return "It is a link that leads back to itself (a symlink loop); fix or remove the link."
    if code == errno.ENAMETOOLONG:
        size = len(os.fsencode(path))
        return (
            f"Its path is longer than the system allows ({size} bytes); move it to a folder "
            f"with a shorter path.{kept}"
        )
    if code == errno.ENOENT and os.path.islink(path):
        return (
            "It is a link to something that does not exist (a dangling link); restore what it "
            "points to, or remove the link."
        )
    what = "folder" if folder else "file"
    if code in (errno.EACCES, errno.EPERM):
        return f"No permission to read this {what}; check its access rights.{kept}"
    detail = (exc.strerror or str(exc)) if exc is not None else "unknown error"
    return f"This {what} cannot be read ({detail}); check the disk it is on.{kept}"


def root_problem(root: Path, has_photos: bool) -> str | None:
    """Why a root folder is unavailable (its entries must be kept), or None if it can be read.
    An empty root is unavailable only if the catalog holds photos from it."""
    try:
        with os.scandir(root) as entries:
            empty = next(entries, None) is None
    except FileNotFoundError:
        return "it does not exist (a drive that is not mounted, or a folder moved away?)"
    except NotADirectoryError:
        return "it is not a folder any more"
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if empty and has_photos:
        return "it is empty (a drive that is not mounted?)"
    return None


def is_gone(path: str, unreadable_folders: Sequence[str] = ()) -> bool:
    """True only on positive evidence that the file at ``path`` no longer exists: no folder
    above it failed to read, and the file system says there is nothing there."""
    for folder in unreadable_folders:
        if path.startswith(folder.rstrip(os.sep) + os.sep):
            return False
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False  # there, but not readable now (permissions, a path too long, a link loop)
    return not stat.S_ISREG(st.st_mode)  # replaced by a folder or a device: not a photo any more
