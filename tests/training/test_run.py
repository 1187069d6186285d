"""``training.run``: one real tiny run (baseline, two Sketchy classes, one step an epoch) as both
front ends run it: each epoch validated, the final evaluation by the one protocol (the HOG
baseline included) stored in the checkpoint, and the run's record kept up to date."""

from __future__ import annotations

import itertools
import sys
import threading

import pytest
import torch

from engine.models import read_checkpoint_info
from training import TrainConfig, drain
from training.evaluate import EvalProgress
from training.run import (
    MAX_VALIDATIONS,
    Evaluated,
    RunPlan,
    Trained,
    Validation,
    run_training,
    validation_due,
)
from training.runs import list_runs, new_run
from training.trainer import TrainProgress

CLASSES = ("airplane", "apple")


def tiny_config(**values) -> TrainConfig:
    return TrainConfig(
        method="baseline",
        model={"bits": 32, "image_size": 96, "pretrained": False, "hidden": 16},
        epochs=2,
        batch_size=4,
        per_class=2,
        device="cpu",
        classes=CLASSES,
        max_steps_per_epoch=1,
        **values,
    )


def test_a_run_validates_evaluates_stores_and_records(shared_data):
    torch.set_num_threads(1)
    config = tiny_config()
    record = new_run(config.method, shared_data / "sketchy", config.to_dict())
    plan = RunPlan(config, shared_data / "sketchy", record.checkpoint)
    events = []
    outcome = drain(run_training(plan, record=record), events.append)

    kinds = [type(e) for e in events]
    assert kinds.count(Validation) == 2 and kinds.count(Trained) == 1
    assert kinds.index(Trained) < kinds.index(EvalProgress) < kinds.index(Evaluated)
    epoch_end = next(i for i, e in enumerate(events) if getattr(e, "phase", "") == "epoch")
    assert isinstance(events[epoch_end + 1], Validation)  # right after the epoch's checkpoint
    assert all(isinstance(e, TrainProgress) for e in events[: kinds.index(Trained)] if
               not isinstance(e, Validation))  # fmt: skip

    report = outcome.report
    assert report["baseline"] and report["real_valued"]  # the one protocol: as the app did
    assert report["protocol"]["classes"] == list(CLASSES)
    stored = read_checkpoint_info(record.checkpoint).metadata["metrics"]
    assert stored["metrics"] == report["metrics"]
    (listed,) = list_runs()
    assert listed.status == "done" and listed.report == report
    assert [v["epoch"] for v in listed.validation] == [1, 2]


def test_a_cancelled_run_is_recorded_as_cancelled_and_not_evaluated(shared_data):
    config = tiny_config()
    record = new_run(config.method, shared_data / "sketchy", config.to_dict())
    plan = RunPlan(config, shared_data / "sketchy", record.checkpoint, validate_each_epoch=False)
    cancel = threading.Event()

    def after_first_step(event) -> None:
        if getattr(event, "phase", "") == "step":
            cancel.set()

    outcome = drain(run_training(plan, cancel, record=record), after_first_step)
    assert outcome.result.cancelled and outcome.report is None
    assert list_runs()[0].status == "cancelled" and list_runs()[0].can_resume


def test_a_failing_run_is_recorded_as_failed(tmp_path):
    config = tiny_config()
    record = new_run(config.method, tmp_path, config.to_dict())
    with pytest.raises(Exception) as failure:
        drain(run_training(RunPlan(config, tmp_path, record.checkpoint), record=record))
    (listed,) = list_runs()
    assert listed.status == "failed" and listed.message == str(failure.value)


def test_runs_started_at_once_each_get_their_own_folder(tmp_path):
    """Two trainings started in the same second (a CLI run beside the app's) once raced
    between checking a name and creating it; the second crashed with FileExistsError (this
    caught the old code in about half of its runs: a race is not certain to show)."""
    start, records, errors = threading.Barrier(16), [], []

    def start_one() -> None:
        start.wait()
        try:
            records.append(new_run("dssa", tmp_path, {"method": "dssa"}))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start_one) for _ in range(16)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often, inside the old check-then-create too
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    folders = {r.folder for r in records}
    assert len(folders) == 16 and all(f.is_dir() for f in folders)
    assert {r.name for r in list_runs()} >= {r.name for r in records}


@pytest.mark.parametrize("epochs", [1, 5, 10, 11, 25, 60, 61, 300])
def test_a_long_run_validates_at_most_ten_evenly_spaced_epochs_and_the_last(epochs):
    due = [e for e in range(1, epochs + 1) if validation_due(e, epochs)]
    assert due[-1] == epochs and len(due) <= MAX_VALIDATIONS + 1
    if epochs <= MAX_VALIDATIONS:
        assert due == list(range(1, epochs + 1))
    else:
        assert len(due) >= MAX_VALIDATIONS // 2
        gaps = {b - a for a, b in itertools.pairwise(due)}
        assert max(gaps) == -(-epochs // MAX_VALIDATIONS)  # even spacing, the last may be sooner
