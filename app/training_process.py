"""Training in a child process, so that a crash or out-of-memory in training never takes the app
down, and the GUI thread never waits on it.

This module must not import Qt: it is what the ``spawn``ed child imports. The child runs
``training.run.run_training`` (the whole run, as ``sketch-search train`` runs it: training, the
per-epoch preview and validation, the final evaluation, the stored figures and the run's
``run.json``) and sends every event back over a ``multiprocessing`` queue as a ``(kind,
payload)`` pair of plain values:

- ``started``: ``{"pid", "qt_loaded"}`` (qt_loaded must be False: the child stays Qt-free);
- ``progress``: the fields of a ``training.TrainProgress``;
- ``validation``: ``{"epoch", "metrics"}`` after each validated epoch
  (``training.run.validation_due``);
- ``preview``: after each epoch, for methods whose model class ``can_imagine`` (GDH): ``{"epoch",
  "epochs", "names", "sketches", "images"}``, a few fixed sketches (uint8 (n, S, S)) and the photos
  the epoch's generator makes of them (uint8 (n, P, P, 3)); ``{"epoch", "epochs", "error"}`` when
  that failed (logged; the run goes on);
- ``trained``: the fields of the ``training.TrainResult`` (paths as strings);
- ``eval_progress``: ``{"stage", "done", "total"}``; ``evaluated``: ``EvalReport.to_json()``
  with the evaluated classes in its protocol;
- ``failed``: ``{"error", "kind", "traceback"}``; ``finished``: always the last message.

The parent side, ``TrainingProcess``, is plain Python too: the panel polls it with a QTimer.
Cancelling sets a shared event; the trainer saves a checkpoint and resume state at that step.
The child writes the run's record as the run goes (``TrainingRequest.record``); the parent
writes it only before the child starts and after it has died.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import queue
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Message = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class TrainingRequest:
    """Everything the child needs, as plain picklable values."""

    config: dict[str, Any]  # TrainConfig.to_dict()
    data_dir: str
    out: str  # the checkpoint the run writes
    log_file: str  # the child's Python log (the trainer writes its own .log.jsonl beside out)
    resume: str | None = None
    record: str | None = None  # the run's folder: its run.json is kept up to date
    validate_each_epoch: bool = True
    preview_each_epoch: bool = True  # only methods whose model can imagine send previews
    evaluate_at_end: bool = True
    eval_classes: list[str] | None = field(default=None)


# ----------------------------------------------------------------------------- the child
def child_main(request: TrainingRequest, events, cancel) -> None:
    """Entry point of the child process (``spawn``: a fresh interpreter without Qt)."""
    handler = logging.FileHandler(request.log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    events.put(("started", {"pid": os.getpid(), "qt_loaded": "PySide6" in sys.modules}))
    try:
        _train_and_evaluate(request, events, cancel)
    except BaseException as exc:  # everything goes back to the app, which decides what to show
        log.exception("Training failed")
        payload = {"error": str(exc), "kind": type(exc).__name__}
        events.put(("failed", {**payload, "traceback": traceback.format_exc()}))
    finally:
        events.put(("finished", {}))
        events.close()
        events.join_thread()


def _train_and_evaluate(request: TrainingRequest, events, cancel) -> None:
    from training import TrainConfig, TrainProgress
    from training.evaluate import EvalProgress
    from training.progress import drain
    from training.run import Evaluated, Preview, RunPlan, Trained, Validation, run_training
    from training.runs import read_run

    plan = RunPlan(
        TrainConfig.from_dict(request.config),
        Path(request.data_dir),
        Path(request.out),
        resume=Path(request.resume) if request.resume else None,
        validate_each_epoch=request.validate_each_epoch,
        preview_each_epoch=request.preview_each_epoch,
        evaluate_at_end=request.evaluate_at_end,
        validation_classes=tuple(request.eval_classes) if request.eval_classes else None,
    )
    record = read_run(Path(request.record)) if request.record else None

    def send(event) -> None:
        if isinstance(event, TrainProgress):
            events.put(("progress", dataclasses.asdict(event)))
        elif isinstance(event, Preview):
            events.put(("preview", event.values))
        elif isinstance(event, Validation):
            events.put(("validation", {"epoch": event.epoch, "metrics": event.metrics}))
        elif isinstance(event, Trained):
            values = {
                k: str(v) if isinstance(v, Path) else v for k, v in vars(event.result).items()
            }
            events.put(("trained", values))
        elif isinstance(event, EvalProgress):
            events.put(("eval_progress", dataclasses.asdict(event)))
        elif isinstance(event, Evaluated):
            events.put(("evaluated", event.report))

    drain(run_training(plan, cancel, record=record), send)


# ----------------------------------------------------------------------------- the parent
def describe_exit(exitcode: int | None) -> str:
    """'exit code 3' or 'killed by signal SIGKILL' (negative codes are signals on POSIX)."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class TrainingProcess:
    """One child process running one ``TrainingRequest``; plain Python, polled by the panel."""

    def __init__(self, request: TrainingRequest) -> None:
        context = multiprocessing.get_context("spawn")
        self.request = request
        self.events = context.Queue()
        self.cancel_event = context.Event()
        self.process = context.Process(
            target=child_main,
            args=(request, self.events, self.cancel_event),
            name="sketch-search-training",
            daemon=True,  # never outlives the app
        )
        self.finished = False  # the child sent its last message
        self._pending: list[Message] = []  # read while stopping, not yet handed out

    def start(self) -> None:
        Path(self.request.log_file).parent.mkdir(parents=True, exist_ok=True)
        self.process.start()
        log.info("Training process %s started for %s", self.process.pid, self.request.out)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def poll(self, limit: int = 500) -> list[Message]:
        """The messages that have arrived, without waiting."""
        messages, self._pending = self._pending, []
        while len(messages) < limit:
            try:
                message = self.events.get_nowait()
            except queue.Empty:
                break
            except (EOFError, OSError, ValueError):  # the child died mid-message
                break
            messages.append(message)
            if message[0] == "finished":
                self.finished = True
        return messages

    def is_alive(self) -> bool:
        return self.process.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def cancel(self) -> None:
        self.cancel_event.set()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask the child to stop (it saves a checkpoint); terminate it if it does not in time."""
        self.cancel()
        deadline = time.monotonic() + timeout_s
        while self.process.is_alive() and time.monotonic() < deadline:
            self._pending.extend(self.poll())  # a child blocked on a full pipe cannot exit
            self.process.join(0.1)
        if self.process.is_alive():
            log.warning("Training process %s did not stop in time; terminating it", self.pid)
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    def close(self) -> None:
        """Release the process and queue handles once the child has exited."""
        self.process.join(1)
        if self.process.is_alive():
            self.stop()
        self.poll()
        self.events.close()
        self.events.cancel_join_thread()
        self.process.close()
