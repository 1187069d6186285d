"""The newest-request-wins job behind search as you draw and the imagine view: requests within
the debounce run once, for the newest; an older answer never replaces a newer one; nothing runs
when there is nothing to run; the newest request's error is reported."""

from __future__ import annotations

import threading

import pytest

from app.gui.search.newest_job import NewestJob
from app.gui.workers import JobRunner


@pytest.fixture
def runner(qtbot):
    runner = JobRunner()
    yield runner
    qtbot.waitUntil(lambda: runner.running() == 0, timeout=10_000)
    assert runner.wait()


def test_requests_within_the_debounce_run_once_for_the_newest(qtbot, runner):
    current = {"value": 0}
    job = NewestJob(runner, lambda: lambda v=current["value"]: v * 10, debounce_ms=50)
    answers = []
    job.returned.connect(answers.append)
    for value in (1, 2, 3):  # no event loop turn between them: the timer cannot fire
        current["value"] = value
        job.request()
    qtbot.waitUntil(lambda: bool(answers) and not job.is_busy(), timeout=10_000)
    assert answers == [30] and job.started == 1


def test_an_older_answer_never_replaces_a_newer_one(qtbot, runner):
    gate = threading.Event()
    current = {"value": "old"}

    def make_call():
        value = current["value"]
        return lambda: value if value != "old" or gate.wait(30) else None

    job = NewestJob(runner, make_call, debounce_ms=0)
    answers = []
    job.returned.connect(answers.append)
    job.request(debounce=False)  # "old" runs and blocks
    current["value"] = "new"
    job.request(debounce=False)  # waits for the running call
    assert job.started == 1 and job.is_busy()
    gate.set()
    qtbot.waitUntil(lambda: bool(answers) and not job.is_busy(), timeout=10_000)
    assert answers == ["new"] and job.started == 2


def test_nothing_to_run_starts_nothing_and_errors_are_reported(qtbot, runner):
    calls = {"next": None}
    job = NewestJob(runner, lambda: calls["next"], debounce_ms=0)
    job.request(debounce=False)
    assert job.started == 0 and not job.is_busy() and runner.running() == 0

    def broken():
        raise ValueError("no photo")

    calls["next"] = broken
    with qtbot.waitSignal(job.errored, timeout=10_000) as blocker:
        job.request(debounce=False)
    assert isinstance(blocker.args[0], ValueError) and str(blocker.args[0]) == "no photo"
