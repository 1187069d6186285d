"""A whole training run, the same for the app and the command line: train, check each epoch,
evaluate, store the figures, keep the run's record.

``run_training(plan, cancel, record=, distributed=)`` is a generator. It passes on the trainer's
``TrainProgress`` events and adds its own:

- after each epoch (its checkpoint just written): a ``Preview`` for methods whose model class
  ``can_imagine`` (GDH), when ``plan.preview_each_epoch``: a few fixed sketches and the photos
  the epoch's generator makes of them (``EpochPreview``); then a ``Validation``, when
  ``plan.validate_each_epoch``: a quick binary-only evaluation on a few classes, after the
  epochs ``validation_due`` picks: every epoch of a run of up to ``MAX_VALIDATIONS``, else that
  many evenly spaced ones, the last included (each decodes and encodes the validation data,
  which for DSSA's 60 ten-step epochs took twice the training's own time);
- ``Trained`` once training stops (finished or cancelled);
- the final evaluation's ``EvalProgress`` events, then ``Evaluated``: one protocol for every front
  end, ``EvalConfig(classes=config.classes)`` (the test split, real-valued figures and the HOG
  baseline included), written into the checkpoint with ``store_metrics``.

It returns a ``RunOutcome``. Given a ``runs.RunRecord``, it keeps the record (``run.json``) up to
date: every validation, then the final status: ``cancelled``, ``done`` (with the report), or
``failed`` with the error, which is raised on (as is ``Cancelled`` before training began).

The preview and validation use the checkpoint the trainer has just written for the epoch (loaded
once and shared by both), never the model being trained: the training loop stays untouched, so
a run gives the same weights with or without them. Under torchrun (``distributed``) only rank 0
checks and evaluates, and the per-epoch checks are skipped (the other processes would wait on
rank 0 at the next step); the process group is left before the final evaluation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import Cancelled
from engine.models import get_method, load_checkpoint
from training.config import TrainConfig
from training.data import load_dataset
from training.distributed import SINGLE, Distributed
from training.evaluate import EvalConfig, EvalProgress, evaluate, store_metrics
from training.progress import drain, relay
from training.runs import RunRecord
from training.trainer import TrainProgress, TrainResult, train

log = logging.getLogger(__name__)

VALIDATION_CLASSES = 8  # category data without a class choice: validate on this many classes
PREVIEW_SKETCHES = 4  # sketches shown with what the generator makes of them, each epoch
PREVIEW_SPLIT = "test"  # the split they come from (as the evaluation's queries), when there is one


@dataclass(frozen=True)
class RunPlan:
    """What one run does: train ``config`` on ``data_dir`` into ``out`` (or continue ``resume``),
    with or without the per-epoch checks and the final evaluation."""

    config: TrainConfig
    data_dir: Path
    out: Path
    resume: Path | None = None
    validate_each_epoch: bool = True
    preview_each_epoch: bool = True  # only methods whose model can imagine make previews
    evaluate_at_end: bool = True
    validation_classes: tuple[str, ...] | None = None  # default: see validation_classes()


@dataclass(frozen=True)
class Validation:
    """The quick validation figures after an epoch."""

    epoch: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class Preview:
    """An epoch's preview: ``values`` as ``EpochPreview.make`` returns them."""

    values: dict[str, Any]


@dataclass(frozen=True)
class Trained:
    """Training stopped (``result.cancelled`` tells whether it finished)."""

    result: TrainResult


@dataclass(frozen=True)
class Evaluated:
    """The final evaluation: ``EvalReport.to_json()``, with the classes in its protocol."""

    report: dict[str, Any]


@dataclass(frozen=True)
class RunOutcome:
    result: TrainResult
    report: dict[str, Any] | None  # None: not evaluated (cancelled, asked not to, not rank 0)


RunEvent = TrainProgress | Preview | Validation | Trained | EvalProgress | Evaluated


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
    """Makes the per-epoch preview values of one run: ``{"epoch", "epochs", "names",
    "sketches", "images"}`` (uint8 (n, S, S) sketches, uint8 (n, P, P, 3) photos), or
    ``{"epoch", "epochs", "error"}`` when that failed (logged; the run goes on)."""

    def __init__(self, dataset, classes: tuple[str, ...] | None) -> None:
        self.items = preview_sketches(dataset, classes)
        self.names = [item.key for item in self.items]
        self._sketches = None  # read at the first model's sketch size

    def make(self, model, epoch: int, epochs: int) -> dict[str, Any]:
        """The values for ``model`` (the epoch's checkpoint); an ``error`` one on failure."""
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


MAX_VALIDATIONS = 10


def validation_due(epoch: int, epochs: int) -> bool:
    """Whether the per-epoch validation runs after ``epoch`` (1-based) of ``epochs``: every
    ``ceil(epochs / MAX_VALIDATIONS)``-th epoch, and the last."""
    every = -(-epochs // MAX_VALIDATIONS)
    return epoch % every == 0 or epoch == epochs


class _EpochChecks:
    """The preview and validation after each epoch, from the epoch's checkpoint."""

    def __init__(self, plan: RunPlan, cancel: threading.Event, record: RunRecord | None) -> None:
        self.plan, self.cancel, self.record = plan, cancel, record
        config = plan.config
        dataset = load_dataset(plan.data_dir)
        self.classes = None  # what the validation measures (category data)
        if dataset.layout == "category":
            spread = plan.validation_classes or validation_classes(dataset.classes, None)
            self.classes = tuple(config.classes) if config.classes else tuple(spread)
        self.device = config.device if config.device != "auto" else None
        self.preview = None
        if plan.preview_each_epoch and get_method(config.method).can_imagine:
            self.preview = EpochPreview(dataset, self.classes)

    def after(self, event: TrainProgress) -> Generator[RunEvent, None, None]:
        if event.phase != "epoch":
            return
        model = None
        if self.preview is not None:
            try:
                model = load_checkpoint(self.plan.out, device=self.device)
            except Exception as exc:  # the validation, if on, reports a bad checkpoint
                log.exception("Could not load the checkpoint of epoch %d to preview", event.epoch)
                values = {"epoch": event.epoch, "epochs": event.epochs, "error": str(exc)}
            else:
                values = self.preview.make(model, event.epoch, event.epochs)
            yield Preview(values)
        if self.plan.validate_each_epoch and validation_due(event.epoch, event.epochs):
            model = model or load_checkpoint(self.plan.out, device=self.device)
            quick = EvalConfig(classes=self.classes, real_valued=False, baseline=False)
            try:
                report = drain(evaluate(model, self.plan.data_dir, quick, self.cancel))
            except Cancelled:
                return  # the trainer sees the cancel at its next step and saves there
            entry = Validation(event.epoch, report.metrics)
            if self.record is not None:
                kept = [e for e in self.record.validation if e["epoch"] != entry.epoch]
                self.record.validation = [*kept, {"epoch": entry.epoch, "metrics": entry.metrics}]
                self.record.save()
            yield entry


def final_evaluation(
    plan: RunPlan, checkpoint: Path, cancel: threading.Event
) -> Generator[EvalProgress, None, dict[str, Any]]:
    """Evaluate the run's checkpoint by the one protocol of a finished run and store the figures
    in it; returns the report (``EvalReport.to_json()``, the classes in its protocol)."""
    config = plan.config
    classes = tuple(config.classes) if config.classes else None
    device = config.device if config.device != "auto" else None
    model = load_checkpoint(checkpoint, device=device)
    report = yield from evaluate(model, plan.data_dir, EvalConfig(classes=classes), cancel)
    store_metrics(checkpoint, report)
    values = report.to_json()
    values["protocol"]["classes"] = list(classes) if classes else None
    return values


def run_training(
    plan: RunPlan,
    cancel: threading.Event | None = None,
    *,
    record: RunRecord | None = None,
    distributed: Distributed | None = None,
) -> Generator[RunEvent, None, RunOutcome]:
    """Run ``plan``; see the module docstring."""
    cancel = cancel or threading.Event()
    dist = distributed or SINGLE
    if record is not None:
        record.status, record.message = "running", ""
        record.save()
    try:
        return (yield from _run(plan, cancel, record, dist))
    except Cancelled as exc:  # before training began (decoding): nothing saved to resume
        if record is not None:
            record.status, record.message = "cancelled", str(exc)
            record.save()
        raise
    except Exception as exc:
        if record is not None:
            record.status, record.message = "failed", str(exc)
            record.save()
        raise


def _run(
    plan: RunPlan, cancel: threading.Event, record: RunRecord | None, dist: Distributed
) -> Generator[RunEvent, None, RunOutcome]:
    checks = plan.validate_each_epoch or plan.preview_each_epoch
    epoch_checks = _EpochChecks(plan, cancel, record) if checks and not dist.active else None
    training = train(
        plan.config, plan.data_dir, plan.out, resume=plan.resume, cancel=cancel, distributed=dist
    )
    if epoch_checks is None:
        result = yield from training
    else:
        result = yield from relay(training, then=epoch_checks.after)
    dist.close()  # rank 0 evaluates alone, outside the process group
    evaluating = not result.cancelled and plan.evaluate_at_end and dist.is_main
    if record is not None and result.cancelled:
        record.status = "cancelled"
        record.message = (
            f"Cancelled at step {result.global_step}; the checkpoint of that step is "
            "kept. Press Resume to continue."
        )
        record.save()
    elif record is not None and not evaluating:
        record.status, record.message = "done", "Trained (not evaluated)."
        record.save()
    yield Trained(result)
    if not evaluating:
        return RunOutcome(result, None)
    try:
        report = yield from final_evaluation(plan, result.checkpoint, cancel)
    except Cancelled:
        if record is not None:
            record.status = "cancelled"
            record.message = "Trained; the evaluation was cancelled. Press Resume to evaluate."
            record.save()
        return RunOutcome(result, None)
    if record is not None:
        record.status, record.report = "done", report
        record.message = "Trained and evaluated."
        record.save()
    yield Evaluated(report)
    return RunOutcome(result, report)
