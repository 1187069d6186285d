"""Start-up times for ``sketch-search bench``: the command line and the app, each run in a fresh
process, as a person starts them (figures, not assertions).

- ``cli_version_s``, ``cli_help_s``, ``cli_models_s``: the whole run of ``--version``,
  ``--help`` and ``models`` (none of them imports torch);
- ``cli_query_first_line_s``: until ``query`` shows its first line on a terminal (a
  pseudo-terminal here), and ``cli_query_s`` until it has answered (an empty library: the model
  is loaded, then it says nothing is indexed);
- ``gui_window_s``: until the app logs that its main window is shown (offscreen, so no display
  server's time is in it); ``gui_model_ready_s``: until the default model is ready.

Each is the median of ``repeats`` runs (the first run also pays for a cold disk cache). Every run
has its own empty ``SKETCH_SEARCH_HOME`` and settings file, so the user's libraries and settings
are neither read nor written.
"""

from __future__ import annotations

import os
import pty
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

READY = "SketchSearch ready"  # app.gui.READY_MESSAGE, not imported: that would import Qt here
MODEL_READY = "Model ready"  # app.gui.library.model_control.MODEL_READY_MESSAGE
TIMEOUT_S = 300.0


def command() -> list[str]:
    """How to start this installation's ``sketch-search``."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "app.cli"]


def _environment(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SKETCH_SEARCH_HOME"] = str(home / "data")
    env["SKETCH_SEARCH_SETTINGS"] = str(home / "settings.ini")
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def _run_once(args: list[str], home: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [*command(), *args],
        env=_environment(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=TIMEOUT_S,
        check=False,
    )
    return time.perf_counter() - start


def _query_once(home: Path) -> tuple[float, float]:
    """(seconds to the first byte on the terminal, seconds to the end) of a query."""
    sketch = home / "line.json"
    sketch.write_text("[[[0, 40, 80], [0, 30, 0]]]")  # a QuickDraw drawing
    library = home / "library"
    primary, secondary = pty.openpty()
    start = time.perf_counter()
    process = subprocess.Popen(
        [*command(), "query", str(sketch), "--library", str(library)],
        env=_environment(home),
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    )
    os.close(secondary)
    first = None
    try:
        while True:
            ready, _, _ = select.select([primary], [], [], TIMEOUT_S)
            if not ready:
                break
            try:
                data = os.read(primary, 4096)
            except OSError:  # the process closed the terminal
                break
            if not data:
                break
            if first is None:
                first = time.perf_counter() - start
    finally:
        os.close(primary)
        process.wait(TIMEOUT_S)
    end = time.perf_counter() - start
    return (end if first is None else first), end


def _gui_once(home: Path) -> tuple[float | None, float | None]:
    """(seconds to the main window, seconds to the model) of the app, then it is stopped."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command(),
        env=_environment(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    window = model = None
    try:
        for line in process.stderr:
            if window is None and READY in line:
                window = time.perf_counter() - start
            if MODEL_READY in line or "No model could be loaded" in line:
                model = time.perf_counter() - start
                break
    finally:
        process.terminate()
        process.communicate(timeout=TIMEOUT_S)
    return window, model


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def bench_startup(repeats: int = 3, report: Callable[[str], None] = lambda _line: None) -> dict:
    """The start-up figures (seconds), each the median of ``repeats`` runs."""
    runs: dict[str, list[float | None]] = {}

    def add(key: str, value: float | None) -> None:
        runs.setdefault(key, []).append(value)

    with tempfile.TemporaryDirectory(prefix="sketch-search-startup-") as tmp:
        for turn in range(repeats):
            home = Path(tmp) / str(turn)
            home.mkdir()
            report(f"Start-up, run {turn + 1} of {repeats} ...")
            add("cli_version_s", _run_once(["--version"], home))
            add("cli_help_s", _run_once(["--help"], home))
            add("cli_models_s", _run_once(["models"], home))
            first, total = _query_once(home)
            add("cli_query_first_line_s", first)
            add("cli_query_s", total)
            window, model = _gui_once(home)
            add("gui_window_s", window)
            add("gui_model_ready_s", model)
    return {key: _median(values) for key, values in runs.items()} | {"startup_repeats": repeats}
