"""Where SketchSearch keeps its files: libraries (their catalogs), trained models,
caches and logs. ``SKETCH_SEARCH_HOME`` overrides the per-user data folder (tests, portable use).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "sketch-search"
HOME_ENV = "SKETCH_SEARCH_HOME"


def data_dir() -> Path:
    """The per-user data folder (created on first use)."""
    override = os.environ.get(HOME_ENV)
    root = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sub(name: str) -> Path:
    path = data_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def libraries_dir() -> Path:
    return _sub("libraries")


def models_dir() -> Path:
    """Checkpoints the user trained or installed."""
    return _sub("models")


def cache_dir() -> Path:
    return _sub("cache")


def logs_dir() -> Path:
    return _sub("logs")


def runs_dir() -> Path:
    """Training runs: checkpoints, resume state and JSON-lines logs."""
    return _sub("runs")


def display_text(text: str) -> str:
    """Text that can always be printed, shown or stored as UTF-8: bytes of a file name that are
    not valid UTF-8 (kept by Python as surrogate escapes) appear as escapes such as ``\\xe9``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (a Windows name)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def display_path(path: str | bytes | os.PathLike) -> str:
    """A path to show to a person: ``b"/photos/caf\\xe9.jpg"`` reads ``/photos/caf\\xe9.jpg``."""
    return display_text(os.fsdecode(path))
