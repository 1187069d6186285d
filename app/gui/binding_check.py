"""Refuse a Qt binding that would crash the app, with a message, before it crashes.

PySide6 6.12.0 on Python 3.11 drops a reference to ``None`` on every call that returns nothing
(``QPainter.drawLine``, ``QPen.setWidthF``, ...). The canvas makes thousands of such calls a sketch,
so ``None``'s reference count reaches zero after a few sketches and the interpreter aborts with
"Fatal Python error: none_dealloc". Python 3.12 and newer are immune (``None`` is immortal there).
``pyproject.toml`` keeps such releases out; this check catches an environment or a frozen bundle
that has one anyway. It tests the behaviour, not a version list, so a later release with the same
fault is caught too; it costs a few microseconds.
"""

from __future__ import annotations

import sys

PROBE_CALLS = 64


def none_references_lost(calls: int = PROBE_CALLS) -> int:
    """How many references to None ``calls`` calls of a Qt method returning nothing lose (0 on a
    sound binding; always 0 on Python 3.12+)."""
    if sys.version_info >= (3, 12):
        return 0
    from PySide6.QtGui import QPen

    pen = QPen()
    before = sys.getrefcount(None)
    for _ in range(calls):
        pen.setWidthF(1.0)
    return before - sys.getrefcount(None)


def binding_problem() -> str | None:
    """A message saying what is wrong and what to install, or None when the binding is sound."""
    lost = none_references_lost()
    if lost < PROBE_CALLS // 2:  # a sound binding loses none; a faulty one one a call
        return None
    import PySide6

    python = ".".join(map(str, sys.version_info[:3]))
    return (
        f"PySide6 {PySide6.__version__} on Python {python} loses a reference to None on every "
        f"Qt call ({lost} in {PROBE_CALLS}), and the app would crash after a few sketches. "
        'Install a sound release (pip install "PySide6-Essentials<6.12"), or use Python 3.12 '
        "or newer."
    )


def versions() -> str:
    """``PySide6 x.y.z, Qt x.y.z, Python x.y.z``: for the start-up log and bug reports."""
    import PySide6
    from PySide6.QtCore import qVersion

    python = ".".join(map(str, sys.version_info[:3]))
    return f"PySide6 {PySide6.__version__}, Qt {qVersion()}, Python {python}"
