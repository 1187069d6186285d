"""The toolbar's Re-rank toggle reaches the searcher: checking it searches the current sketch
again with ``rerank=True`` (the test model has no exact distance, so the answer says why it
kept the Hamming order), unchecking it searches without."""

from __future__ import annotations

from engine.sketch import read_quickdraw
from tests.app.conftest import shared_or_skip
from tests.app.test_search_as_you_draw import replay


def test_rerank_toggle_searches_again_with_rerank(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    drawing = next(read_quickdraw(shared_or_skip("quickdraw", "apple.ndjson.gz"), limit=1))
    library.add_root(photo_folder)
    window = make_window(auto_index=True)
    window.show()
    qtbot.waitExposed(window)
    wait_for_index(window)
    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
        replay(window.canvas, drawing.strokes)
    plain = blocker.args[0]
    assert not window.rerank_action.isChecked() and plain.rerank_note is None

    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
        window.rerank_action.trigger()
    asked = blocker.args[0]
    assert window.search.rerank and window.rerank_action.isChecked()
    assert not asked.reranked and "no exact distance" in asked.rerank_note
    assert [r.photo_id for r in asked.results] == [r.photo_id for r in plain.results]

    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
        window.rerank_action.trigger()
    assert not window.search.rerank and blocker.args[0].rerank_note is None
