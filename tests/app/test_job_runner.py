"""The GUI's job runner: a generator job stopped between two yields is closed at once."""

from __future__ import annotations

import gc
import threading

from app.gui.workers import JobRunner


def test_a_quit_generator_job_runs_its_finally_without_the_garbage_collector(qtbot):
    """superqt left a quit generator open, so the indexer's decode pool shut down only when the
    garbage collector found it, and its threads outlived the closed window (a CI failure)."""
    runner = JobRunner()
    first, release, closed = threading.Event(), threading.Event(), threading.Event()
    seen: list[int] = []

    def job():
        try:
            for i in range(1000):
                yield i
                if i == 0:
                    first.set()
                    release.wait(10)
        finally:
            closed.set()

    gc.disable()  # the close must not depend on a collection
    try:
        runner.run_generator(job, on={"yielded": seen.append})
        assert first.wait(10)
        runner.cancel_all()  # quit() between two yields, as closing the window does
        release.set()
        assert runner.wait(10_000)
        assert closed.wait(5), "the generator's finally did not run when its worker stopped"
    finally:
        gc.enable()
    qtbot.waitUntil(lambda: len(seen) >= 1, timeout=5_000)
    assert len(seen) < 1000  # it was stopped, not run to its end
