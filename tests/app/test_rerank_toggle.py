"""The toolbar's Re-rank toggle: enabled only for a model that can re-rank (DSSA), with the
reason in its tooltip otherwise (before, it did nothing on five of six models, silently); on
when such a model becomes active (it was off, so the app searched DSSA without the re-ranking
its figures are of); unchecking it searches the current sketch again without, checking with."""

from __future__ import annotations

from app.gui.main_window import MainWindow
from engine.sketch import read_quickdraw
from engine.store import create_fresh
from tests.app.conftest import shared_or_skip
from tests.app.test_search_as_you_draw import replay


def test_rerank_is_disabled_with_the_reason_for_a_model_without_an_exact_distance(make_window):
    window = make_window(auto_index=False)  # a baseline model: Hamming codes only
    action = window.rerank_action
    assert not action.isEnabled() and not window.search.rerank
    assert "not available for baseline (baseline, 64-bit)" in action.toolTip()
    assert "no exact distance" in action.toolTip()
    assert window.expand_spin.isEnabled()  # category level: query expansion applies


def test_rerank_toggle_searches_again_with_rerank(
    qtbot, library, photo_folder, settings, wait_for_index
):
    drawing = next(read_quickdraw(shared_or_skip("quickdraw", "apple.ndjson.gz"), limit=1))
    library.add_root(photo_folder)
    dssa = create_fresh("dssa", bits=64, image_size=96)
    window = MainWindow(library=library, model=dssa, settings=settings)
    window.models.index_job.batch_size = 8
    qtbot.addWidget(window)
    try:
        with qtbot.waitSignal(window.models.modelChanged, timeout=60_000):
            pass
        window.show()
        qtbot.waitExposed(window)
        wait_for_index(window)
        assert window.rerank_action.isEnabled()
        assert "not available" not in window.rerank_action.toolTip()
        # fine-grained: its nearest photos are other shoes, so Expand is off with the reason
        assert not window.expand_spin.isEnabled()
        assert "looks for one particular photo" in window.expand_spin.toolTip()
        with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
            replay(window.canvas, drawing.strokes)
        first = blocker.args[0]
        assert window.rerank_action.isChecked() and window.search.rerank  # on by default
        assert first.reranked and first.rerank_note is None and first.expanded == 0
        scores = [r.score for r in first.results]
        assert scores == sorted(scores)  # ordered by the exact distance

        with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
            window.rerank_action.trigger()
        plain = blocker.args[0]
        assert not window.search.rerank and not window.rerank_action.isChecked()
        assert not plain.reranked and len(plain.results) == len(first.results)

        with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
            window.rerank_action.trigger()
        assert window.search.rerank and blocker.args[0].reranked
    finally:
        window.close()
