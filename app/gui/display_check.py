"""Why the app could not show a window on Linux, found before Qt tries (and aborts the process).

Qt's xcb platform plugin aborts with a core dump when it cannot load (a system library it links
is not installed: on a fresh Debian or Ubuntu often ``libxcb-icccm4`` and ``libxcb-keysyms1``,
though Qt's own hint names only ``libxcb-cursor0``) or when there is no X display to connect to.
``display_problem()`` checks both the way Qt will meet them, without creating an application:
- no ``DISPLAY`` (and no ``WAYLAND_DISPLAY``): no display at all, e.g. over ssh;
- the xcb plugin's libraries: ``ldd`` on the plugin lists those not found, which are named with
  their Debian/Ubuntu packages (``apt-get install ...``);
- the X server: ``xcb_connect`` with ``DISPLAY``, as Qt does, and ``xcb_connection_has_error``.
It returns a message saying what to do (and that the command line works without a display), or
None. Platforms other than xcb (``QT_QPA_PLATFORM=offscreen``, wayland, macOS, Windows) are left
to Qt.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Debian/Ubuntu packages of the libraries Qt's xcb plugin links (bookworm, jammy and newer)
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb.so.1": "libxcb1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)
_CANNOT_OPEN = re.compile(r"(\S+\.so[.\d]*): cannot open shared object file")


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that holds a library: from the table, else by Debian's naming
    rule (``libfoo.so.1`` is in ``libfoo1``, ``libfoo2.so.0`` in ``libfoo2-0``)."""
    if soname in PACKAGES:
        return PACKAGES[soname]
    base, _, version = soname.partition(".so.")
    base, version = base.lower(), version.split(".")[0]
    if not version:
        return base
    return f"{base}-{version}" if base[-1:].isdigit() else f"{base}{version}"


def missing_libraries(library: Path) -> list[str]:
    """The shared libraries ``library`` needs that the system does not have (their sonames)."""
    ldd = shutil.which("ldd")
    if ldd:
        try:
            run = subprocess.run([ldd, str(library)], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            run = None
        if run is not None and run.returncode == 0:
            return sorted(set(_NOT_FOUND.findall(run.stdout)))
    try:  # no ldd (or it failed): the loader names the first library it misses
        ctypes.CDLL(str(library))
    except OSError as exc:
        found = _CANNOT_OPEN.search(str(exc))
        return [found.group(1)] if found else []
    return []


def xcb_plugin() -> Path | None:
    """Qt's xcb platform plugin of this installation (None if it has none)."""
    from PySide6.QtCore import QLibraryInfo

    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    path = plugins / "platforms" / "libqxcb.so"
    return path if path.is_file() else None


def _x_server_error(display: str) -> int:
    """0 if an X server answers at ``display``, else libxcb's error code (-1: no libxcb)."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return -1
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    try:
        return int(xcb.xcb_connection_has_error(connection))
    finally:
        xcb.xcb_disconnect(connection)  # frees the connection, also a failed one


def _wanted_platform() -> str:
    """The platform plugin Qt will try first: QT_QPA_PLATFORM's first name, else xcb (the
    default of PySide6's Linux wheels) or wayland in a Wayland session without X."""
    chosen = os.environ.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if chosen:
        return chosen
    if os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY"):
        return "wayland"
    return "xcb"


CLI_WORKS = (
    "The command line works without a display: 'sketch-search index FOLDER', "
    "'sketch-search query SKETCH' (see 'sketch-search --help')."
)


def display_problem(plugin: Path | None = None) -> str | None:
    """What stops the app from opening a window here, with what to do; None when nothing
    does (or on a platform this does not check). ``plugin``: the xcb plugin to check."""
    if not sys.platform.startswith("linux") or _wanted_platform() != "xcb":
        return None
    display = os.environ.get("DISPLAY", "")
    if not display:
        return (
            "No display is available (DISPLAY is not set: no desktop session, e.g. a login "
            "over ssh without X forwarding), so the app cannot open its window. Start it from "
            f"a desktop session, or use 'ssh -X'. {CLI_WORKS}"
        )
    plugin = plugin or xcb_plugin()
    if plugin is not None and (missing := missing_libraries(plugin)):
        packages = sorted({debian_package(name) for name in missing})
        return (
            "Qt's X11 (xcb) plugin cannot load: the system libraries "
            f"{', '.join(missing)} are not installed. On Debian or Ubuntu install them with: "
            f"sudo apt-get install {' '.join(packages)} (other systems: the packages that "
            f"provide these files). {CLI_WORKS}"
        )
    error = _x_server_error(display)
    if error > 0:
        return (
            f"Cannot connect to the X display '{display}' (libxcb error {error}): no X server "
            "runs there, or this user may not use it (xauth). Check DISPLAY, or start the app "
            f"from the desktop session. {CLI_WORKS}"
        )
    return None
