"""Training in a child process, so that a crash or out-of-memory in training never takes the app
down, and the GUI thread never waits on it.

This module must not import Qt: it is what the ``spawn``ed child imports. The child runs
``training.train`` (and, per epoch, a small validation; at the end, the same evaluation as
``sketch-search evaluate``) and sends every event back over a ``multiprocessing`` queue as a
``(kind, payload)`` pair of plain values:

- ``started``: ``{"pid", "qt_loaded"}`` (qt_loaded must be False: the child stays Qt-free);
- ``progress``: the fields of a ``training.TrainProgress``;
- ``validation``: ``{"epoch", "metrics"}`` after each epoch;
- ``preview``: after each epoch, for methods whose model class ``can_imagine`` (GDH): ``{"epoch",
  "epochs", "names", "sketches", "images"}``, a few fixed sketches (uint8 (n, S, S)) and the photos
  the epoch's generator makes of them (uint8 (n, P, P, 3)); ``{"epoch", "epochs", "error"}`` when
  that failed (logged; the run goes on);
- ``trained``: the fields of the ``training.TrainResult`` (paths as strings);
- ``eval_progress``: ``{"stage", "done", "total"}``; ``evaluated``: ``EvalReport.to_json()``;
- ``failed``: ``{"error", "kind", "traceback"}``; ``finished``: always the last message.

The parent side, ``TrainingProcess``, is plain Python too: the panel polls it with a QTimer.
Cancelling sets a shared event; the trainer saves a checkpoint and resume state at that step.

The preview is made from the checkpoint the trainer has just written for the epoch (loaded once
and shared with the validation), never from the model being trained: the training loop stays
untouched, so a run gives the same weights with or without previews. Its sketches are chosen once
and kept for the whole run (``preview_sketches``): the evaluation split's sketches of an even
spread of the validated classes, the first of each class in file-name order, round robin.
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

import numpy as np

log = logging.getLogger(__name__)

VALIDATION_CLASSES = 8  # category data without a class choice: validate on this many classes
PREVIEW_SKETCHES = 4  # sketches shown with what the generator makes of them, each epoch
PREVIEW_SPLIT = "test"  # the split they come from (as the evaluation's queries), when there is one
Message = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class TrainingRequest:
    """Everything the child needs, as plain picklable values."""

    config: dict[str, Any]  # TrainConfig.to_dict()
    data_dir: str
    out: str  # the checkpoint the run writes
    log_file: str  # the child's Python log (the trainer writes its own .log.jsonl beside out)
    resume: str | None = None
    validate_each_epoch: bool = True
    preview_each_epoch: bool = True  # only methods whose model can imagine send previews
    evaluate_at_end: bool = True
    eval_classes: list[str] | None = field(default=None)


def validation_classes(classes: tuple[str, ...], chosen: tuple[str, ...] | None) -> list[str]:
    """The classes validated each epoch: the trained ones, else an even spread of the data's."""
    if chosen:
        return list(chosen)
    step = max(1, len(classes) // VALIDATION_CLASSES)
    return list(classes[::step][:VALIDATION_CLASSES])


def preview_sketches(dataset, classes: tuple[str, ...] | None, count: int = PREVIEW_SKETCHES):
    """The sketch items previewed each epoch: the same ones for a data set and class choice.

    From the ``PREVIEW_SPLIT`` split when the data has one, of ``classes`` when given (category
    data): ``count`` labels evenly spread, then the first sketch of each in key order, then the
    second, ... until ``count`` are chosen (fewer when the data has fewer).
    """
    view = dataset.restrict_classes(classes) if classes else dataset
    if PREVIEW_SPLIT in view.splits:
        view = view.subset(PREVIEW_SPLIT)
    by_label: dict[int, list] = {}
    for item in sorted(view.sketches, key=lambda s: s.key):
        by_label.setdefault(item.label, []).append(item)
    labels = sorted(by_label)
    labels = labels[:: max(1, len(labels) // count)][:count]
    chosen: list = []
    for rank in range(count):
        for label in labels:
            if len(chosen) < count and rank < len(by_label[label]):
                chosen.append(by_label[label][rank])
    return chosen


class EpochPreview:
    """Makes the per-epoch ``preview`` payloads of one run (child side, Qt-free)."""

    def __init__(self, dataset, classes: tuple[str, ...] | None) -> None:
        self.items = preview_sketches(dataset, classes)
        self.names = [item.key for item in self.items]
        self._sketches = None  # read at the first model's sketch size

    def make(self, model, epoch: int, epochs: int) -> dict[str, Any]:
        """The payload for ``model`` (the epoch's checkpoint); an ``error`` one on failure."""
        try:
            if not self.items:
                raise ValueError("the data set has no sketches to preview")
            if self._sketches is None or self._sketches.shape[-1] != model.sketch_size:
                from training.arrays import read_sketch

                size = model.sketch_size
                self._sketches = np.stack([read_sketch(i.path, size) for i in self.items])
            images = model.imagine(self._sketches)
        except Exception as exc:  # a preview never stops the training run
            log.exception("Could not make the preview of epoch %d", epoch)
            return {"epoch": epoch, "epochs": epochs, "error": f"{type(exc).__name__}: {exc}"}
        return {
            "epoch": epoch,
            "epochs": epochs,
            "names": list(self.names),
            "sketches": self._sketches.copy(),
            "images": np.ascontiguousarray(images, dtype=np.uint8),
        }


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
    from engine.errors import Cancelled
    from engine.models import get_method, load_checkpoint
    from training import EvalConfig, TrainConfig, evaluate, load_dataset, store_metrics, train
    from training.progress import drain

    config = TrainConfig.from_dict(request.config)
    dataset = load_dataset(request.data_dir)
    final_classes = tuple(config.classes) if config.classes else None  # as the CLI evaluates
    quick_classes = None
    if dataset.layout == "category":
        spread = request.eval_classes or validation_classes(dataset.classes, None)
        quick_classes = final_classes or tuple(spread)
    device = config.device if config.device != "auto" else None
    preview = None
    if request.preview_each_epoch and get_method(config.method).can_imagine:
        preview = EpochPreview(dataset, quick_classes)

    def send_progress(event) -> None:
        events.put(("progress", dataclasses.asdict(event)))
        if event.phase != "epoch":
            return
        model = None
        if preview is not None:
            try:
                model = load_checkpoint(request.out, device=device)
            except Exception as exc:  # the validation, if on, reports a bad checkpoint
                log.exception("Could not load the checkpoint of epoch %d to preview", event.epoch)
                payload = {"epoch": event.epoch, "epochs": event.epochs, "error": str(exc)}
            else:
                payload = preview.make(model, event.epoch, event.epochs)
            events.put(("preview", payload))
        if request.validate_each_epoch:
            validate(model or load_checkpoint(request.out, device=device), event.epoch)

    def validate(model, epoch: int) -> None:
        quick = EvalConfig(classes=quick_classes, real_valued=False, baseline=False)
        try:
            report = drain(evaluate(model, request.data_dir, quick, cancel))
        except Cancelled:
            return  # the trainer sees the cancel at its next step and saves there
        events.put(("validation", {"epoch": epoch, "metrics": report.metrics}))

    run = train(config, request.data_dir, request.out, resume=request.resume, cancel=cancel)
    result = drain(run, send_progress)
    values = {k: str(v) if isinstance(v, Path) else v for k, v in vars(result).items()}
    events.put(("trained", values))
    if result.cancelled or not request.evaluate_at_end:
        return
    model = load_checkpoint(result.checkpoint, device=device)
    full = EvalConfig(classes=final_classes)

    def send_eval(event) -> None:
        events.put(("eval_progress", dataclasses.asdict(event)))

    try:
        report = drain(evaluate(model, request.data_dir, full, cancel), send_eval)
    except Cancelled:
        return
    store_metrics(result.checkpoint, report)
    values = report.to_json()
    values["protocol"]["classes"] = list(final_classes) if final_classes else None
    events.put(("evaluated", values))


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
