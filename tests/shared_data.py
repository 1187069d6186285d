"""Where the tests find real data, and what they say when it is not there.

The real photos, sketches and strokes are research data kept outside the repository, in
``../shared/data`` beside the checkout; a fresh clone does not have them. Tests that need them
skip with ``missing_reason`` and every other test runs without them.
"""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def missing_reason(path: Path) -> str:
    """The skip reason of a test that needs ``path`` under the shared data."""
    return (
        f"needs real data at {path}, which this checkout does not have: a folder ../shared/data "
        "beside the checkout with the research data sets the tests use (Sketchy photos and "
        "sketches, QMUL shoes and chairs, QuickDraw strokes, PACS; see the README's 'Run the "
        "tests'). It is never part of the repository; the tests that do not need it run "
        "without it."
    )
