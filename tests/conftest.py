"""Shared fixtures: the real data beside the checkout, and an isolated per-user data folder and
settings file, so no test reads or writes the data or settings of the user running it."""

from pathlib import Path

import pytest

from tests.shared_data import SHARED_DATA, missing_reason


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip with a reason when absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(missing_reason(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own SKETCH_SEARCH_HOME, so nothing touches the user's real data."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("SKETCH_SEARCH_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own app settings file (``app.gui.settings``), never the user's
    ~/.config/SketchSearch."""
    path = tmp_path_factory.mktemp("settings") / "settings.ini"
    monkeypatch.setenv("SKETCH_SEARCH_SETTINGS", str(path))
    return path
