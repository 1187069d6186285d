"""The one training loop every method runs in: a generator of progress events.

``train(config, data_dir, out)`` validates the data set (DatasetError before anything else),
builds the model, or loads the checkpoint it fine-tunes (``config.init_from``: see
``training.finetune``), or resumes it; decodes the data once into memory, then runs epochs of the
method's ``TrainingProcedure`` steps, yielding a frozen ``TrainProgress`` after every step and at
every epoch end. It returns a ``TrainResult`` (the generator's return value: ``yield from`` or
superqt's ``returned`` signal get it). Setting ``cancel`` (a threading.Event) stops it between
steps; it then saves a checkpoint and resume state at that exact step and returns with
``cancelled=True``.

A model whose config asks for fitted codes (``codes="fitted"``, ``engine.models.fitted``) has
them fitted at every epoch end, before the checkpoint is written (``phase="fit"`` events): on
the raw outputs of all the training sketches and photos after the last epoch, on 512 of each
after the others (so every epoch's checkpoint can make codes, e.g. for a per-epoch validation),
never on the zero-shot test classes (``training.fit_codes``). A checkpoint saved mid-epoch on
cancel keeps the previous epoch's fit.

Files, beside ``out`` (e.g. ``runs/sketchy.safetensors``):
- ``out``: the model (engine checkpoint: safetensors + JSON metadata), rewritten every epoch;
- ``<out>.resume.safetensors`` / ``<out>.resume.json``: optimiser, scheduler and procedure state,
  loop position and config (``training.state``: no pickle);
- ``<out>.log.jsonl``: one JSON object a line: the config, every step, every epoch, the end.

Determinism: the batches of epoch e come from a generator seeded with (seed, e), and torch's
global RNG (augmentation, dropout) is re-seeded from (seed, global step) before every step. The
whole random state is so a function of the loop position, and ``resume`` continues bit for bit
on CPU. On CUDA, bf16 autocast and cuDNN make runs close, not identical.

Several processes (``distributed``, from ``training.distributed.join_from_environment`` under
torchrun): every process decodes the data and builds the same model and the same epoch batches;
each trains on its share of them (``Distributed.shard``: an epoch of B batches is ceil(B / N)
steps of every process, and the schedule counts those steps), with its gradients averaged by
DistributedDataParallel, so a step trains on N batches at once (the learning rate is not scaled
for it). The step seeds add the rank. At every epoch end rank 0's buffers (BatchNorm statistics)
are copied to all before the procedure's hook, the fitted codes are fitted by rank 0 alone, the
processes check that they hold the same weights and procedure state, and rank 0 alone writes the
checkpoint, resume state and log (``processes`` records how many there were). A cancel seen by
any process stops all at the same step. A resume state saved at an epoch end continues with any
number of processes (its step count is converted); one saved mid-epoch only with as many as
saved it. With no ``distributed``, or one process, the loop is the single-process one above.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.devices import pick_device
from engine.errors import CheckpointError, ConfigError
from engine.models import create, load_checkpoint, model_id, save_checkpoint
from engine.models.fitted import evenly_spaced, fit_model_codes
from training.arrays import PrepareProgress, prepare_arrays
from training.config import TrainConfig, lr_factor
from training.distributed import SINGLE, Distributed
from training.finetune import load_start_model
from training.fit_codes import INTERIM_LIMIT, fit_hog_term, fit_summary, training_arrays
from training.methods import get_procedure
from training.procedure import StepContext
from training.progress import relay
from training.sources import training_dataset
from training.state import load_state, save_state, state_digest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainProgress:
    """A progress event of ``train``: the phase, where the run is (epoch, step), the latest losses,
    learning rate, speed and ETA, and an epoch's validation ``metrics``."""

    phase: str  # "prepare", "step", "fit", "epoch", "done", "cancelled"
    epoch: int  # 1-based
    epochs: int
    step: int  # steps done in this epoch
    steps_per_epoch: int
    global_step: int
    total_steps: int
    losses: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0
    samples_per_s: float = 0.0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` returns: the files it wrote (checkpoint, resume state, log), how far it got,
    whether it was cancelled, the last losses and the model's id."""

    checkpoint: Path
    resume_state: Path
    log: Path
    epochs_done: int
    global_step: int
    cancelled: bool
    losses: dict[str, float]
    model_id: str
    state_digest: str = ""  # of the procedure's state (training.state.state_digest)


def run_files(out: str | Path) -> tuple[Path, Path, Path]:
    """(checkpoint, resume state base, log) paths of a run writing ``out``."""
    out = Path(out)
    return out, out.with_name(out.stem + ".resume"), out.with_name(out.stem + ".log.jsonl")


def _rank_part(dist: Distributed) -> tuple[int, ...]:
    """What sets a process's step seeds apart: nothing in one process (as before distributed
    training existed), the rank in a distributed run."""
    return (dist.rank,) if dist.active else ()


def _move_schedules(
    schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR],
    optimizers: dict[str, torch.optim.Optimizer],
    config: TrainConfig,
    global_step: int,
    steps_per_epoch: int,
) -> None:
    """Set every schedule to ``global_step`` of this run (a resume with another number of
    processes, whose steps per epoch differ from those that the saved state counted)."""
    factor = lr_factor(config, global_step, steps_per_epoch)
    for name, sched in schedulers.items():
        sched.last_epoch = global_step
        groups = optimizers[name].param_groups
        for group, base in zip(groups, sched.base_lrs, strict=True):
            group["lr"] = base * factor
        sched._last_lr = [group["lr"] for group in groups]


def _seed(config: TrainConfig, *parts: int) -> int:
    value = config.seed
    for p in parts:
        value = (value * 1_000_003 + p + 1) % (2**63 - 1)
    return value


class _RunLog:
    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled  # a distributed run's rank 0 writes the log, the others nothing
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **values: Any) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": event, "time": time.time(), **values}) + "\n")


def train(
    config: TrainConfig,
    data_dir: str | Path,
    out: str | Path,
    *,
    resume: str | Path | None = None,
    cancel: threading.Event | None = None,
    distributed: Distributed | None = None,
) -> Generator[TrainProgress, None, TrainResult]:
    """Train ``config.method`` on ``data_dir``, writing ``out``; see the module docstring.

    ``distributed``: this process's place in a torchrun run (``training.distributed``); None
    (or ``SINGLE``) trains in this process alone."""
    cancel = cancel or threading.Event()
    dist = distributed or SINGLE
    config, state = _resumed_config(config, resume, dist)
    dataset, procedure_class = _training_data(config, data_dir)
    device = dist.device(pick_device(config.device))
    torch.manual_seed(config.seed)
    model, config, start = _start_model(config, resume, run_files(out)[0], device)
    if config.doodle_classes != "data" and not procedure_class.photoless_classes:
        raise ConfigError(
            f"'{config.method}' trains on classes with photos only; doodle_classes "
            f"'{config.doodle_classes}' adds classes without photos."
        )
    run = _Run(config, dist, out, dataset, model, device, cancel)
    yield from run.prepare(procedure_class, state, start)
    return (yield from run.epochs())


def _resumed_config(
    config: TrainConfig, resume: str | Path | None, dist: Distributed
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The config a run trains with (a resumed run's saved one, with this run's epochs, device
    and workers) and the resume state (None: a new run). Refuses to resume another method's
    run, or a mid-epoch state with another number of processes."""
    if resume is None:
        return config, None
    state = load_state(run_files(resume)[1])
    saved = TrainConfig.from_dict(state["config"])
    if saved.method != config.method:
        raise CheckpointError(f"{resume} was trained with '{saved.method}', not '{config.method}'.")
    config = saved.replace(epochs=config.epochs, device=config.device, workers=config.workers)
    saved_processes = int(state.get("processes", 1))  # states before distributed training: 1
    if saved_processes != dist.world_size and state["step"]:
        raise CheckpointError(
            f"{resume} was saved in the middle of epoch {state['epoch'] + 1} by "
            f"{saved_processes} training process(es); resume it with {saved_processes} "
            "(torchrun --nproc_per_node ...), or resume from a checkpoint saved at the end "
            "of an epoch, which any number of processes can continue."
        )
    return config, state


def _training_data(config: TrainConfig, data_dir: str | Path):
    """The training view of the data (every source, the class rules applied) and the method's
    procedure class; fails before anything is decoded."""
    dataset = training_dataset(config, data_dir)
    if not dataset.sketches:
        raise ConfigError(f"The '{config.split}' split of {data_dir} has no sketches to train on.")
    return dataset, get_procedure(config.method)  # unknown method: fail before decoding


def _start_model(config: TrainConfig, resume, ckpt_path: Path, device: torch.device):
    """(model, config, start): the resumed run's model, a fine-tune's starting checkpoint
    (``config.init_from``; ``start`` describes it for the log), or a new model."""
    if resume is not None:  # a fine-tune resumes from its own state too, not from init_from
        return load_checkpoint(resume, method=config.method, device=device), config, {}
    if config.init_from is not None:
        return load_start_model(config, ckpt_path, device)
    return create(config.method, **config.model).to(device), config, {}


class _Run:
    """One run of the loop: the model, its procedure, optimisers and schedules, where the loop
    is (``global_step``, the last losses) and the files it writes. ``prepare`` decodes the data
    and builds the procedure (or restores it from the resume state), ``epochs`` runs the loop."""

    def __init__(self, config, dist, out, dataset, model, device, cancel) -> None:
        self.config, self.dist, self.dataset = config, dist, dataset
        self.model, self.device, self.cancel = model, device, cancel
        self.ckpt_path, self.state_base, self.log_path = run_files(out)
        self.start_epoch = self.start_step = self.global_step = 0
        self.run_steps = self.run_samples = 0
        self.last_losses: dict[str, float] = {}
        self.codes_fit: dict[str, Any] = {}  # what the fitted codes of the model were fitted on

    def preparing(self, steps: Generator[PrepareProgress, None, Any], verb: str):
        """Relay a preparation generator as "prepare" events; return its value. Cancelled
        propagates: nothing to save yet."""
        return relay(
            steps,
            lambda p: TrainProgress(
                "prepare",
                0,
                self.config.epochs,
                p.done,
                p.total,
                0,
                0,
                message=f"{verb} {p.what} {p.done}/{p.total}",
            ),
        )

    def prepare(
        self, procedure_class, state: dict[str, Any] | None, start: dict[str, Any]
    ) -> Generator[TrainProgress, None, None]:
        """Decode the data, build the procedure, its optimisers and schedules (restored from
        ``state`` when resuming), and write the log's first line."""
        config, dist, model, device = self.config, self.dist, self.model, self.device
        self.data = yield from self.preparing(
            prepare_arrays(self.dataset, model.photo_size, model.sketch_size, self.cancel),
            "decoding",
        )
        procedure = self.procedure = procedure_class(model, self.data, config, device)
        procedure.dist = dist
        if state is None and config.init_from is None:  # neither resumed nor a fine-tune
            procedure.start_new_model()
        yield from self.preparing(procedure.prepare(self.cancel), "computing")
        optimizers = self.optimizers = procedure.build_optimizers()
        steps_per_epoch = self.steps_per_epoch = len(  # this process's share of the batches
            dist.shard(procedure.epoch_batches(0, torch.Generator().manual_seed(_seed(config, 0))))
        )
        self.schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: lr_factor(config, s, steps_per_epoch)
            )
            for name, opt in optimizers.items()
        }
        if state is not None:
            for name, opt in optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
                self.schedulers[name].load_state_dict(state["schedulers"][name])
            procedure.load_extra_state(state["procedure"])
            self.start_epoch, self.start_step = state["epoch"], state["step"]
            self.global_step = state["global_step"]
            if int(state.get("processes", 1)) != dist.world_size:  # at an epoch end (see above)
                self.global_step = self.start_epoch * steps_per_epoch  # in this run's steps
                _move_schedules(
                    self.schedulers, optimizers, config, self.global_step, steps_per_epoch
                )

        # gradients averaged across the processes (DistributedDataParallel); None alone
        self.trained = {"model": model, **procedure.training_modules()}
        sync = dist.gradient_sync(self.trained, device)
        self.run_log = _RunLog(self.log_path, enabled=dist.is_main)
        self.run_log.write(
            "config" if state is None else "resume",
            config=config.to_dict(),
            data=self.dataset.summary(),
            device=str(device),
            start=[self.start_epoch, self.start_step],
            processes=dist.world_size,
            **({"init_from": start} if start else {}),
        )
        self.ctx = StepContext(device, optimizers, config.grad_clip, config.amp, sync=sync)
        self.total_steps = steps_per_epoch * config.epochs
        self.started = time.monotonic()

    def epochs(self) -> Generator[TrainProgress, None, TrainResult]:
        """The epochs from where the run starts: steps, epoch-end hooks, fitted codes, the
        checkpoint; stops between steps on cancel, saving at that step."""
        config, dist, procedure, run_log = self.config, self.dist, self.procedure, self.run_log
        for epoch in range(self.start_epoch, config.epochs):
            batches = dist.shard(
                procedure.epoch_batches(epoch, torch.Generator().manual_seed(_seed(config, epoch)))
            )
            first = self.start_step if epoch == self.start_epoch else 0
            if first == 0:
                procedure.on_epoch_start(epoch)
            for step in range(first, len(batches)):
                if dist.any(self.cancel.is_set()):  # every process stops at the same step
                    self.save_on_main(epoch, step)
                    run_log.write("cancelled", epoch=epoch, step=step, global_step=self.global_step)
                    yield self.progress(
                        "cancelled", epoch, step, message="cancelled; checkpoint saved"
                    )
                    return self.result(True, epoch)
                yield self.step(epoch, step, batches[step])
            yield from self.end_epoch(epoch, len(batches))
        run_log.write("done", global_step=self.global_step, model_id=model_id(self.model))
        yield self.progress(
            "done", config.epochs - 1, self.steps_per_epoch, message=f"saved {self.ckpt_path}"
        )
        return self.result(False, config.epochs)

    def step(self, epoch: int, step: int, batch: Any) -> TrainProgress:
        """One optimiser step of the procedure on ``batch``; logged, and its progress event."""
        # the seed of the step's augmentation and dropout; each process its own
        torch.manual_seed(_seed(self.config, 1_000_000 + self.global_step, *_rank_part(self.dist)))
        self.procedure.train_mode()
        self.last_losses = self.procedure.step(batch, self.ctx)
        for sched in self.schedulers.values():
            sched.step()
        self.global_step += 1
        self.run_steps += 1
        self.run_samples += self.procedure.batch_samples(batch)
        event = self.progress("step", epoch, step + 1)
        self.run_log.write(
            "step",
            epoch=epoch + 1,
            step=step + 1,
            global_step=self.global_step,
            losses=self.last_losses,
            lr=event.lr,
            samples_per_s=event.samples_per_s,
        )
        return event

    def end_epoch(self, epoch: int, steps: int) -> Generator[TrainProgress, None, None]:
        """The epoch end: rank 0's buffers to all, the procedure's hook, fitted codes (rank 0),
        the checkpoint and resume state, the log line and the "epoch" event."""
        model, dist = self.model, self.dist
        dist.broadcast_module_buffers(list(self.trained.values()))  # BatchNorm stats: rank 0's
        metrics = self.procedure.on_epoch_end(epoch)
        if model.fitted_codes is not None and dist.is_main:  # fitted once, then broadcast
            self.codes_fit.update(
                (yield from self.fit_codes(epoch, epoch + 1 == self.config.epochs))
            )
            self.run_log.write("fit", epoch=epoch + 1, codes_fit=self.codes_fit)
        self.save_on_main(epoch + 1, 0)
        self.run_log.write(
            "epoch",
            epoch=epoch + 1,
            global_step=self.global_step,
            losses=self.last_losses,
            metrics=metrics,
        )
        yield self.progress("epoch", epoch, steps, metrics=dict(metrics))

    def fit_codes(self, epoch: int, last: bool) -> Generator[TrainProgress, None, dict[str, Any]]:
        """Fit a codes="fitted" model's binarisation on the training data (raw outputs, no
        augmentation), on all of it after the last epoch and on INTERIM_LIMIT sketches and
        photos after the others, so every epoch's checkpoint can make codes."""
        sketches, photos, dropped = training_arrays(self.data)
        limit = None if last else INTERIM_LIMIT
        fit = yield from relay(
            fit_model_codes(self.model, sketches, photos, limit=limit),
            lambda p: self.progress(
                "fit",
                epoch,
                self.steps_per_epoch,
                message=f"fitting codes: {p.stage} {p.done}/{p.total}",
            ),
        )
        counts = tuple(min(len(a), limit or len(a)) for a in (sketches, photos))
        note = fit_summary(
            self.data, self.config.split, counts, dropped, fit, self.model.config.code_fit
        )
        hog = getattr(self.model, "hog_fit", None)  # DSSA's HOG re-ranking term: fitted once
        if hog is not None and (last or not int(hog.fitted)):  # early (usable), then at the end
            s_idx, p_idx = evenly_spaced(len(sketches), limit), evenly_spaced(len(photos), limit)
            note["hog_term"] = yield from relay(
                fit_hog_term(self.model, sketches[s_idx], photos[p_idx], self.cancel),
                lambda p: self.progress(
                    "fit",
                    epoch,
                    self.steps_per_epoch,
                    message=f"fitting the HOG term: {p.stage} {p.done}/{p.total}",
                ),
            )
        return note

    def save(self, epoch: int, step: int) -> None:
        """Write the checkpoint and the resume state at this loop position."""
        config, dist = self.config, self.dist
        save_checkpoint(
            self.model,
            self.ckpt_path,
            name=self.ckpt_path.stem,
            data=self.dataset.summary(),
            training={
                "config": config.to_dict(),
                "epoch": epoch,
                "step": step,
                "global_step": self.global_step,
                "losses": self.last_losses,
                "processes": dist.world_size,
            },
            **({"codes_fit": self.codes_fit} if self.codes_fit else {}),
        )
        save_state(
            self.state_base,
            {
                "config": config.to_dict(),
                "epoch": epoch,
                "step": step,
                "global_step": self.global_step,
                "processes": dist.world_size,
                "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                "procedure": self.procedure.extra_state(),
            },
        )

    def save_on_main(self, epoch: int, step: int) -> None:
        """Rank 0 writes the checkpoint and resume state; first every rank takes rank 0's
        buffers (BatchNorm statistics, which each process updated on its own batches, and
        whatever rank 0 alone fitted) and checks that all of them hold the same weights and
        procedure state; every rank goes on once the files are written. Alone: ``save``."""
        dist = self.dist
        if dist.active:
            dist.broadcast_module_buffers(list(self.trained.values()))
            dist.check_identical(model_id(self.model), "weights")
            dist.check_identical(state_digest(self.procedure.extra_state()), "procedure state")
        if dist.is_main:
            self.save(epoch, step)
        dist.barrier()

    def result(self, cancelled: bool, epochs_done: int) -> TrainResult:
        return TrainResult(
            self.ckpt_path,
            self.state_base,
            self.log_path,
            epochs_done,
            self.global_step,
            cancelled,
            dict(self.last_losses),
            model_id(self.model),
            state_digest(self.procedure.extra_state()),
        )

    def progress(self, phase: str, epoch: int, step: int, **extra: Any) -> TrainProgress:
        """A progress event at this loop position (speed counted over all processes)."""
        elapsed = time.monotonic() - self.started
        rate = self.run_samples * self.dist.world_size / elapsed if elapsed > 0 else 0.0
        eta = (
            (self.total_steps - self.global_step) * elapsed / self.run_steps
            if self.run_steps
            else None
        )
        opts = self.optimizers
        lr = opts["main"].param_groups[0]["lr"] if "main" in opts else 0.0
        return TrainProgress(
            phase,
            epoch + 1,
            self.config.epochs,
            step,
            self.steps_per_epoch,
            self.global_step,
            self.total_steps,
            dict(self.last_losses),
            lr,
            rate,
            eta,
            elapsed,
            **extra,
        )
