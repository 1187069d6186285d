"""The history of training runs: one folder per run under ``engine.paths.runs_dir()``.

A run folder holds the checkpoint ``<name>.safetensors`` (with its resume state and
``<name>.log.jsonl`` beside it, as ``training.run_files`` names them), the app's training
process's Python log ``<name>.child.log``, and ``run.json``: method, data folder, date, config,
status, the evaluation report, the per-epoch validation figures and, once the model was put to
use, where its copy in ``models_dir()`` lies. A run started with ``sketch-search train --out
PATH`` writes its checkpoint at PATH and records it in ``out``; its folder then holds run.json
alone. ``training.run`` keeps the record up to date as the run goes; the app and the command
line both list the history from here.

Statuses: ``running``, ``cancelled``, ``interrupted`` (the process died or the app closed),
``failed``, ``done``. A run is resumable when its resume state exists and it is not done.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.paths import models_dir, runs_dir
from training.state import state_paths
from training.trainer import run_files

log = logging.getLogger(__name__)

RECORD_NAME = "run.json"
STATUSES = ("running", "cancelled", "interrupted", "failed", "done")


@dataclass
class RunRecord:
    folder: Path
    name: str
    method: str
    data_dir: str
    created: str  # ISO date and time
    config: dict[str, Any]
    status: str = "running"
    message: str = ""
    report: dict[str, Any] | None = None
    validation: list[dict[str, Any]] = field(default_factory=list)  # {"epoch", "metrics"}
    installed: str | None = None  # the copy in models_dir(), once used
    validate: bool = True  # validate after every epoch
    out: str | None = None  # the checkpoint, when it lies outside the folder (train --out)

    @property
    def checkpoint(self) -> Path:
        return Path(self.out) if self.out else self.folder / f"{self.name}.safetensors"

    @property
    def train_log(self) -> Path:
        return run_files(self.checkpoint)[2]

    @property
    def child_log(self) -> Path:
        return self.folder / f"{self.name}.child.log"

    @property
    def can_resume(self) -> bool:
        state = run_files(self.checkpoint)[1]
        return self.status != "done" and state.with_name(state.name + ".json").is_file()

    @property
    def metrics(self) -> dict[str, float]:
        return dict((self.report or {}).get("metrics") or {})

    def date_text(self) -> str:
        return self.created.replace("T", " ")[:16]

    def save(self) -> None:
        values = asdict(self)
        values["folder"] = str(self.folder)
        tmp = self.folder / (RECORD_NAME + ".tmp")
        tmp.write_text(json.dumps(values, indent=1))
        os.replace(tmp, self.folder / RECORD_NAME)


def new_run(
    method: str,
    data_dir: str | Path,
    config: dict[str, Any],
    validate: bool = True,
    out: str | Path | None = None,
) -> RunRecord:
    """A fresh run folder named after the method and the time, and its record; ``out``: the
    checkpoint's path when it is not to lie in the folder."""
    now = datetime.datetime.now()
    base = f"{method}-{now:%Y%m%d-%H%M%S}"
    runs_dir().mkdir(parents=True, exist_ok=True)
    name, n = base, 1
    while True:  # mkdir itself claims the name: two runs started in one second get two folders
        folder = runs_dir() / name
        try:
            folder.mkdir()
            break
        except FileExistsError:
            n += 1
            name = f"{base}-{n}"
    record = RunRecord(
        folder,
        name,
        method,
        str(data_dir),
        now.isoformat(timespec="seconds"),
        dict(config),
        validate=validate,
        out=str(Path(out).absolute()) if out is not None else None,
    )
    record.save()
    return record


def find_run(checkpoint: str | Path) -> RunRecord | None:
    """The run whose checkpoint ``checkpoint`` is, if one is recorded."""
    wanted = Path(checkpoint).resolve()
    for path in runs_dir().glob(f"*/{RECORD_NAME}"):
        try:
            record = read_run(path.parent)
        except (OSError, ValueError, TypeError):
            continue
        if record.checkpoint.resolve() == wanted:
            return record
    return None


def read_run(folder: Path) -> RunRecord:
    values = json.loads((folder / RECORD_NAME).read_text())
    values["folder"] = folder
    known = RunRecord.__dataclass_fields__
    return RunRecord(**{k: v for k, v in values.items() if k in known})


def list_runs(running: Path | None = None) -> list[RunRecord]:
    """Every readable run, newest first. A run recorded as running that is not ``running`` (the
    folder of the run in progress) was cut off: it is reported as interrupted."""
    records = []
    for path in runs_dir().glob(f"*/{RECORD_NAME}"):
        try:
            record = read_run(path.parent)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("Skipping the unreadable run record %s: %s", path, exc)
            continue
        if record.status == "running" and record.folder != running:
            record.status = "interrupted"
            record.message = "The training process stopped before the run ended."
            record.save()
        records.append(record)
    return sorted(records, key=lambda r: r.created, reverse=True)


def install_run(record: RunRecord) -> Path:
    """Copy the run's checkpoint into models_dir() (once), so the model picker lists it."""
    if not record.checkpoint.is_file():
        raise FileNotFoundError(f"The run {record.name} has no checkpoint left to use.")
    target = models_dir() / record.checkpoint.name
    if not target.is_file() or target.stat().st_mtime < record.checkpoint.stat().st_mtime:
        tmp = target.with_name(target.name + ".tmp")
        shutil.copy2(record.checkpoint, tmp)
        os.replace(tmp, target)
    record.installed = str(target)
    record.save()
    return target


def delete_run(record: RunRecord) -> None:
    """Remove the run's folder and its installed copy (and, for a checkpoint written outside
    the folder, that checkpoint, its resume state and its log)."""
    if record.installed:
        Path(record.installed).unlink(missing_ok=True)
    if record.out:
        checkpoint, state, train_log = run_files(record.checkpoint)
        for path in (checkpoint, train_log, *state_paths(state)):
            path.unlink(missing_ok=True)
    shutil.rmtree(record.folder, ignore_errors=True)
    log.info("Deleted the training run %s", record.name)


def read_step_losses(record: RunRecord) -> list[tuple[int, dict[str, float]]]:
    """(global step, loss terms) of every step in the run's log, to redraw curves on resume."""
    points = []
    try:
        lines = record.train_log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return points
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a crash
        if entry.get("event") == "step":
            points.append((int(entry["global_step"]), dict(entry.get("losses") or {})))
    return points
