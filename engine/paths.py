"""Where SketchSearch keeps its files: libraries (catalogs, saved indexes), trained models,
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
