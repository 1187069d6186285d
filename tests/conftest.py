"""Shared fixtures: the real data beside the checkout, and an isolated per-user data folder."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip with a reason when absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own SKETCH_SEARCH_HOME, so nothing touches the user's real data."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("SKETCH_SEARCH_HOME", str(home))
    return home
