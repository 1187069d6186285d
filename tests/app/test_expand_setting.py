"""The toolbar's Expand setting reaches the searcher (the answer says how many photos voted on
the query code), and is kept in the settings only when it differs from the app's default, so a
new default reaches everyone who never changed it."""

from __future__ import annotations

from engine.searcher import DEFAULT_EXPAND
from engine.sketch import read_quickdraw
from tests.app.conftest import shared_or_skip
from tests.app.test_search_as_you_draw import replay


def test_expand_setting_searches_again_and_is_remembered(
    qtbot, make_window, library, photo_folder, wait_for_index, settings
):
    drawing = next(read_quickdraw(shared_or_skip("quickdraw", "apple.ndjson.gz"), limit=1))
    library.add_root(photo_folder)
    window = make_window(auto_index=True)
    window.show()
    qtbot.waitExposed(window)
    wait_for_index(window)
    assert window.expand_spin.value() == DEFAULT_EXPAND == window.search.expand
    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
        replay(window.canvas, drawing.strokes)
    first = blocker.args[0]
    assert first.expanded == DEFAULT_EXPAND and first.asymmetric

    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
        window.expand_spin.setValue(DEFAULT_EXPAND + 7)
    expanded = blocker.args[0]
    assert window.search.expand == DEFAULT_EXPAND + 7
    assert expanded.expanded == DEFAULT_EXPAND + 7
    # a query moved towards other neighbours ranks the photos at other distances
    assert [r.score for r in expanded.results] != [r.score for r in first.results]

    window.close()
    assert int(settings.value("expand")) == DEFAULT_EXPAND + 7
    again = make_window(auto_index=False)
    assert again.expand_spin.value() == DEFAULT_EXPAND + 7 == again.search.expand
    again.expand_spin.setValue(DEFAULT_EXPAND)
    again.close()
    assert settings.value("expand") is None  # back to the default: nothing stored
