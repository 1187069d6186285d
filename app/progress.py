"""A one-line text progress bar for the command line (stderr, redrawn in place on a terminal)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


def _hours_minutes_seconds(seconds: float) -> tuple[int, int, int]:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return hours, minutes, secs


def format_duration(seconds: float | None) -> str:
    """A time for a progress bar: ``01:05``, ``1:02:03``, ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    hours, minutes, secs = _hours_minutes_seconds(seconds)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_eta(seconds: float | None) -> str:
    """The time left in words for the app: ``about 1 min 05 s left``; "" when unknown."""
    if seconds is None:
        return ""
    hours, minutes, secs = _hours_minutes_seconds(seconds)
    if not hours and not minutes:
        return f"about {secs} s left"
    if not hours:
        return f"about {minutes} min {secs:02d} s left"
    return f"about {hours} h {minutes:02d} min left"


def bar_updater(bar: ProgressLine, quiet: bool = False) -> Callable[[Any], None]:
    """What draws a job's progress events on ``bar`` (for ``training.progress.drain``): a
    ``TrainProgress`` as epoch, losses, rate and ETA; a preparation step as its message; any
    other event (evaluation, fitting: ``stage``, ``done``, ``total``) as its stage. ``quiet``:
    draw nothing. Other events (a run's validation figures) are not drawn."""

    def update(e: Any) -> None:
        if quiet:
            return
        if hasattr(e, "global_step") and e.phase != "prepare":
            losses = " ".join(f"{k} {v:.3f}" for k, v in e.losses.items())
            text = (
                f"epoch {e.epoch}/{e.epochs} {losses} lr {e.lr:.2e} "
                f"{e.samples_per_s:.1f} img/s ETA {format_duration(e.eta_s)}"
            )
            bar.update(e.global_step, e.total_steps, text, force=e.phase != "step")
        elif hasattr(e, "global_step"):
            bar.update(e.step, e.steps_per_epoch, e.message)
        elif hasattr(e, "done"):
            bar.update(e.done, e.total, e.stage)

    return update


class ProgressLine:
    """``update(done, total, text)`` draws ``[#####-----] done/total text``; ``close()`` ends it.

    On a terminal the line is redrawn in place at most ten times a second; elsewhere (logs, CI)
    a line is written at most every ``plain_every_s`` seconds.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 28, plain_every_s: float = 5.0):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self.min_gap = 0.1 if self.tty else plain_every_s
        self._last = 0.0
        self._drawn = False

    def update(self, done: int, total: int | None, text: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.min_gap:
            return
        self._last = now
        if total:
            filled = int(self.width * min(done, total) / total)
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"[{bar}] {done}/{total} {text}"
        else:
            line = f"{done} {text}"
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(100))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False


class StatusLine:
    """What a command is doing before it has progress to show ("Loading the model…"), on a
    terminal only: drawn in place and erased by ``clear()``, so output and errors that follow
    are unchanged, and pipes and logs never see it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._width = 0

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up late: tests and callers replace stderr

    def show(self, text: str) -> None:
        stream = self.stream
        if not stream.isatty():
            return
        line = text[:100]
        stream.write("\r" + line.ljust(self._width))
        stream.flush()
        self._width = len(line)

    def clear(self) -> None:
        if self._width:
            stream = self.stream
            stream.write("\r" + " " * self._width + "\r")
            stream.flush()
            self._width = 0
