"""The training configuration: one frozen dataclass, validated on creation.

``model`` holds the engine model's options (bits, backbone, image_size, ...: validated by the
method's own config class when the model is built); ``options`` holds the training procedure's
own knobs (loss weights, ...: validated by the procedure). Everything else is common to every
method. ``from_dict`` refuses unknown keys, so a typo in a config file is an error, not a no-op.

``init_from`` names a checkpoint to fine-tune: the run starts from its weights and architecture
(``model`` may only repeat its values) with a fresh optimiser; see ``training.finetune``. It is
kept in the config, so the run log and the checkpoint's training metadata say where a model
started.

Training data beyond the main folder (``training.sources``): ``hold_out`` names classes (or the
named set "unseen20") left out of every source, for a class-disjoint validation;
``extra_data`` more category-level folders merged by class name; ``doodles`` a QuickDraw folder
whose drawings of the training classes are added as sketches (at most ``doodles_per_class`` of
each); ``doodle_classes="imagenet"`` also adds the QuickDraw classes that the data lacks but
ImageNet has (``training.imagenet``), as classes without photos, for procedures that train on
them (``TrainingProcedure.photoless_classes``). The hidden zero-shot test classes are left out
of every source whatever the config says.

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
from training.data import NAMED_CLASS_SETS, ZERO_SHOT_TEST_CLASSES, class_key, is_hidden_class

SCHEDULES = ("constant", "step", "cosine")
DOODLE_CLASSES = ("data", "imagenet")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides its data and output: the method and its model config
    (``model``) and procedure options (``options``), the schedule, device, data view (classes,
    hold-out, extra data) and seed. Frozen; stored in the checkpoint and the resume state
    (``to_dict``), so a run can be resumed and reproduced."""

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
    hold_out: str | tuple[str, ...] = ()  # classes left out of every source, or "unseen20"
    extra_data: tuple[str, ...] = ()  # more category-level folders, merged by class name
    doodles: str | None = None  # a QuickDraw folder: drawings of the training classes
    doodles_per_class: int | None = None  # at most this many drawings of each class (None: all)
    doodle_classes: str = "data"  # doodles of the data's classes, or "imagenet": also ImageNet's

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", dict(self.model))
        object.__setattr__(self, "options", dict(self.options))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))
        for name in ("init_from", "doodles"):
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        if not isinstance(self.hold_out, str):
            object.__setattr__(self, "hold_out", tuple(self.hold_out))
        if isinstance(self.extra_data, str | os.PathLike):
            raise ConfigError("Training config: extra_data must be a list of folders.")
        object.__setattr__(self, "extra_data", tuple(os.fspath(p) for p in self.extra_data))
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
            (
                self.hold_out in NAMED_CLASS_SETS
                if isinstance(self.hold_out, str)
                else all(isinstance(c, str) and c for c in self.hold_out),
                f"hold_out must be class names or a named set ({', '.join(NAMED_CLASS_SETS)})",
            ),
            (all(self.extra_data), "extra_data must be folder paths"),
            (
                self.doodles is None or (isinstance(self.doodles, str) and self.doodles),
                "doodles must be a QuickDraw folder (or None)",
            ),
            (
                self.doodle_classes in DOODLE_CLASSES,
                f"doodle_classes must be one of {DOODLE_CLASSES}",
            ),
            (
                self.doodle_classes == "data" or self.doodles is not None,
                "doodle_classes 'imagenet' needs a QuickDraw folder (doodles)",
            ),
            (
                self.doodles_per_class is None or self.doodles_per_class >= 1,
                "doodles_per_class must be at least 1 (or None for all)",
            ),
            (
                not any(is_hidden_class(c) for c in self.classes or ()),
                "classes names a hidden zero-shot test class, which no training may use "
                f"({', '.join(sorted(ZERO_SHOT_TEST_CLASSES))})",
            ),
            (
                not {class_key(c) for c in self.classes or ()}
                & {class_key(c) for c in self._hold_out_names()},
                "classes and hold_out name the same class",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"Training config: {message}.")

    def _hold_out_names(self) -> tuple[str, ...]:
        if isinstance(self.hold_out, str):
            return NAMED_CLASS_SETS.get(self.hold_out, ())
        return self.hold_out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists); ``from_dict`` reads it back."""
        values = dataclasses.asdict(self)
        values["classes"] = list(self.classes) if self.classes is not None else None
        if not isinstance(self.hold_out, str):
            values["hold_out"] = list(self.hold_out)
        values["extra_data"] = list(self.extra_data)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The config of ``to_dict``; unknown or ill-typed options raise ConfigError naming them."""
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
        """A copy with ``changes``."""
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
