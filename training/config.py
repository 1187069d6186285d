"""The training configuration: one frozen dataclass, validated on creation.

``model`` holds the engine model's options (bits, backbone, image_size, ...: validated by the
method's own config class when the model is built); ``options`` holds the training procedure's
own knobs (loss weights, ...: validated by the procedure). Everything else is common to every
method. ``from_dict`` refuses unknown keys, so a typo in a config file is an error, not a no-op.

``init_from`` names a checkpoint to fine-tune: the run starts from its weights and architecture
(``model`` may only repeat its values) with a fresh optimiser; see ``training.finetune``. It is
kept in the config, so the run log and the checkpoint's training metadata say where a model
started.

Learning-rate schedules (per optimiser step): ``constant``; ``step`` (times ``gamma`` every
``step_epochs`` epochs: the papers' schedule, e.g. DSH, DSSA); ``cosine`` (to 1 % of ``lr`` at
the end), each after an optional linear warm-up of ``warmup_steps``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError

SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    method: str = "baseline"
    model: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 32  # sketches per batch (category level: as many photos beside them)
    per_class: int = 4  # category level: sketches (and photos) of each class in a batch
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 0
    step_epochs: int = 10
    gamma: float = 0.1
    grad_clip: float = 5.0  # max global gradient norm; 0 disables clipping
    freeze_blocks: int = 0  # backbone stages kept frozen (stem counts as part of stage 1)
    device: str = "auto"
    amp: bool = True  # bf16 autocast, used on CUDA only
    seed: int = 0
    split: str | None = "train"  # None: the whole folder
    classes: tuple[str, ...] | None = None  # category level: train on these classes only
    max_steps_per_epoch: int | None = None
    hard_negatives: bool = False  # fine-grained: mine negatives with the current model
    workers: int | None = None  # decoding threads
    init_from: str | None = None  # checkpoint whose weights (and architecture) the run starts from

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", dict(self.model))
        object.__setattr__(self, "options", dict(self.options))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))
        if isinstance(self.init_from, os.PathLike):
            object.__setattr__(self, "init_from", os.fspath(self.init_from))
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 2, "batch_size must be at least 2"),
            (1 <= self.per_class <= self.batch_size, "per_class must be in [1, batch_size]"),
            (self.batch_size % self.per_class == 0, "batch_size must be a multiple of per_class"),
            (math.isfinite(self.lr) and self.lr > 0, "lr must be a positive number"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.step_epochs >= 1, "step_epochs must be at least 1"),
            (0 < self.gamma <= 1, "gamma must be in (0, 1]"),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0 disables it)"),
            (self.freeze_blocks >= 0, "freeze_blocks must be >= 0"),
            (
                self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
                "max_steps_per_epoch must be at least 1",
            ),
            (self.workers is None or self.workers >= 1, "workers must be at least 1"),
            (
                self.init_from is None or (isinstance(self.init_from, str) and self.init_from),
                "init_from must be a checkpoint path (or None for a new model)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"Training config: {message}.")

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["classes"] = list(self.classes) if self.classes is not None else None
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"Unknown training option(s): {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}."
            )
        try:
            return cls(**dict(values))
        except TypeError as exc:
            raise ConfigError(f"Training config: {exc}") from exc

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of ``config.lr`` for optimiser step ``step`` (0-based)."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        return config.gamma ** ((step // max(1, steps_per_epoch)) // config.step_epochs)
    total = max(1, config.epochs * steps_per_epoch - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / total)
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))
