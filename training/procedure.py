"""What a method supplies to the trainer: its batches, its step, its optimisers, its hooks.

The trainer (``training.trainer``) owns the loop, seeding, schedules, checkpoints, resume and
progress; a ``TrainingProcedure`` owns everything method-specific:
- ``epoch_batches(epoch, generator)``: the epoch's batches as plain index data (a pure function
  of the generator, so a resumed epoch is rebuilt exactly); ``steps_per_epoch()`` their count;
- ``step(batch, ctx)``: forward, losses, and ``ctx.update(loss)`` for each optimiser it steps
  (one for most methods; GANs such as GDH step several in turn); returns the loss terms;
- ``build_optimizers()``: named optimisers (the trainer gives each the configured schedule);
- ``on_epoch_start`` / ``on_epoch_end``: hooks, e.g. DSH and GDH update their discrete codes B and
  projection D between epochs, fine-grained training mines hard negatives;
- ``prepare(cancel)``: work before the first step that reports progress (e.g. computing targets
  with a frozen network), as a generator of ``PrepareProgress``; nothing by default;
- ``extra_state`` / ``load_extra_state``: whatever of the above must survive a resume (tensors
  and JSON values only; no pickle).

Distributed training (``training.distributed``): the trainer sets ``dist`` (``SINGLE`` unless
the run has several processes) before ``prepare``. ``step`` needs nothing: the trainer shards
the batches and ``ctx.update`` averages the gradients. Work outside backprop (passes over the
training set, closed-form code updates, fitted projections, mined negatives) must leave every
rank with the same state: split a pass with ``dist.chunk`` / ``dist.gather_rows``, and
broadcast rank 0's result (``dist.broadcast_tensors`` / ``broadcast_object``). After every epoch
the trainer compares the ranks' ``extra_state`` digests and stops on a difference.
A method registers its procedure with ``@register_procedure`` (see ``training.methods``).
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from engine.errors import Cancelled, ConfigError
from engine.model_files import default_checkpoint
from engine.models import SketchHashModel, load_checkpoint
from training.arrays import PreparedData, PrepareProgress
from training.config import TrainConfig
from training.distributed import SINGLE, Distributed
from training.samplers import class_balanced_batches, triplets


class StepContext:
    """Per-step services of the trainer: autocast and a clipped optimiser update.

    ``sync``: in a distributed run, the DistributedDataParallel that each loss passes through
    before its backward, so that the backward averages the gradients across the processes
    (``Distributed.gradient_sync``); None in one process."""

    def __init__(
        self,
        device: torch.device,
        optimizers: Mapping[str, torch.optim.Optimizer],
        grad_clip: float,
        amp: bool,
        sync: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.device = device
        self.optimizers = optimizers
        self.grad_clip = grad_clip
        self.use_bf16 = amp and device.type == "cuda"
        self.sync = sync

    def autocast(self):
        """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 is slow and changes results)."""
        if self.use_bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def update(self, loss: torch.Tensor, optimizer: str = "main") -> float:
        """Backward ``loss``, clip the gradients of ``optimizer``'s parameters, step it.

        Returns the gradient norm before clipping (inf/nan steps are skipped, not applied).
        """
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        if self.sync is not None:
            loss = self.sync(loss)
        loss.backward()
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if self.grad_clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        else:
            norm = (
                float(torch.norm(torch.stack([p.grad.norm() for p in params]))) if params else 0.0
            )
        if torch.isfinite(torch.tensor(norm)):
            opt.step()
        return norm


class TrainingProcedure(ABC):
    method: ClassVar[str]
    default_options: ClassVar[Mapping[str, Any]] = {}
    photoless_classes: ClassVar[bool] = False
    """True when the procedure trains on classes with sketches but no photos (the doodles of
    ImageNet classes, ``TrainConfig.doodle_classes="imagenet"``)."""
    dist: Distributed = SINGLE
    """This process's place in a distributed run; the trainer sets it before ``prepare``."""

    def __init__(
        self,
        model: SketchHashModel,
        data: PreparedData,
        config: TrainConfig,
        device: torch.device,
    ) -> None:
        self.model = model
        self.data = data
        self.config = config
        self.device = device
        unknown = sorted(set(config.options) - set(self.default_options))
        if unknown:
            raise ConfigError(
                f"Unknown option(s) for training '{self.method}': {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.default_options)) or 'none'}."
            )
        self.options = {**self.default_options, **config.options}
        self.frozen: list[nn.Module] = []  # pretrained parts kept in eval mode (BatchNorm stats)

    # ------------------------------------------------------------------ what a method defines
    @abstractmethod
    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimisers; the one most methods have is called "main"."""

    @abstractmethod
    def epoch_batches(self, epoch: int, generator: torch.Generator) -> list[Any]:
        """The batches of ``epoch`` (0-based), as index data, from ``generator`` only."""

    @abstractmethod
    def step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        """One training step; returns its loss terms (``total`` among them)."""

    # ------------------------------------------------------------------ optional
    def batch_samples(self, batch: Any) -> int:
        """How many images a batch feeds the model (for samples/s)."""
        return sum(len(part) for part in batch) if isinstance(batch, tuple) else len(batch)

    def train_mode(self) -> None:
        """The model and the training-only modules in training mode, ``frozen`` parts in eval."""
        self.model.train()
        for module in self.training_modules().values():
            module.train()
        for module in self.frozen:
            module.eval()

    def start_new_model(self) -> None:  # noqa: B027 - optional hook
        """Called before ``prepare`` for a new model only (not a resumed run or a fine-tune):
        where a method starts weights from elsewhere (e.g. DSH's C2-Net)."""

    def load_sketch_encoder(self, trunk: nn.Module, option: str) -> bool:
        """Copy into ``trunk`` (an EfficientNet-Lite0) the sketch encoder of the anchor
        checkpoint the option ``option`` names: "default" (the shipped default model), a path,
        or "" (nothing: ImageNet's weights stay). Only a safetensors checkpoint of the anchor
        method is read (``load_checkpoint`` refuses anything else). True when weights came."""
        source = self.options[option]
        if not isinstance(source, str):
            raise ConfigError(f'{self.method} {option} must be "default", "" or a checkpoint path.')
        source = source.strip()
        if not source:
            return False
        if source == "default":
            path = default_checkpoint()
            if path is None:
                raise ConfigError(
                    f'{self.method} {option} "default" needs the shipped default model, which is '
                    'not installed; give an anchor checkpoint path, or "" for ImageNet weights.'
                )
        else:
            path = Path(source).expanduser()
        anchor = load_checkpoint(path, method="anchor")
        trunk.load_state_dict(anchor.sketch_trunk.state_dict())
        return True

    def prepare(self, cancel: threading.Event) -> Generator[PrepareProgress, None, None]:
        """Work before the first step, with progress; raises Cancelled once ``cancel`` is set."""
        yield from ()

    def on_epoch_start(self, epoch: int) -> None:  # noqa: B027 - optional hook
        """Called before an epoch's first step (not again when resuming inside the epoch)."""

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Called after an epoch's last step; returns metrics to report."""
        return {}

    def training_modules(self) -> dict[str, nn.Module]:
        """Modules trained beside the model but not saved in it (classifiers, discriminators)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """State to resume with beyond the model and optimisers (tensors and JSON values)."""
        return {name: m.state_dict() for name, m in self.training_modules().items()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        for name, module in self.training_modules().items():
            module.load_state_dict(state[name])

    # ------------------------------------------------------------------ shared helpers
    # ------------------------------------------------------------------ batch helpers
    def forward_rows(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        arrays: Any,
        to_batch: Callable[[Any], torch.Tensor],
        what: str,
        cancel: threading.Event,
        batch_size: int,
    ) -> Generator[PrepareProgress, None, torch.Tensor]:
        """A pass over the data before training: ``forward(to_batch(arrays[i:j]))`` over this
        process's ``dist.chunk`` of the rows, in batches, without gradients, with progress and
        cancellation; returns every process's float outputs gathered in row order."""
        rows = self.dist.chunk(len(arrays))
        parts = []
        with torch.no_grad():
            for i in range(rows.start, rows.stop, batch_size):
                if cancel.is_set():
                    raise Cancelled("Training was cancelled.")
                end = min(i + batch_size, rows.stop)
                parts.append(forward(to_batch(arrays[i:end])).float())
                yield PrepareProgress(what, end - rows.start, len(rows))
        return self.dist.gather_rows(
            torch.cat(parts) if parts else torch.empty(0, device=self.device)
        )

    def category_batches(self, generator: torch.Generator) -> list[tuple[list[int], list[int]]]:
        """One category-level epoch: class-balanced (sketch, photo) index batches, about one
        pass over the sketches, capped at ``max_steps_per_epoch``."""
        data, cfg = self.data, self.config
        per_batch = min(cfg.batch_size, cfg.per_class * len(data.dataset.classes))
        natural = max(1, -(-len(data.sketch_labels) // per_batch))
        steps = cfg.max_steps_per_epoch
        return class_balanced_batches(
            data.sketch_labels,
            data.photo_labels,
            cfg.batch_size // cfg.per_class,
            cfg.per_class,
            generator,
            num_batches=min(natural, steps) if steps else natural,
        )

    def triplet_batches(
        self,
        generator: torch.Generator,
        annotated: Mapping[int, list[tuple[int, int]]],
        negatives: Mapping[int, list[int]] | None = None,
    ) -> list[tuple[list[int], ...]]:
        """One fine-grained epoch: (sketch, positive, negative) index batches of ``batch_size``
        (a last batch of one triplet is dropped), capped at ``max_steps_per_epoch``."""
        data, size, steps = self.data, self.config.batch_size, self.config.max_steps_per_epoch
        rows = triplets(data.sketch_photo, len(data.photos), generator, annotated, negatives)
        batches = [tuple(zip(*rows[i : i + size], strict=True)) for i in range(0, len(rows), size)]
        batches = [tuple(list(part) for part in b) for b in batches if len(b[0]) >= 2]
        return batches[:steps] if steps else batches

    def adamw_with_slow_trunk(
        self,
        trunks: Sequence[nn.Module] = (),
        extra: Sequence[nn.Parameter] = (),
        no_decay: Sequence[nn.Parameter] = (),
    ) -> dict[str, torch.optim.Optimizer]:
        """The "main" AdamW most methods use: the model's trainable parameters and ``extra``
        ones at ``lr``; those of the pretrained ``trunks`` at ``lr`` x the
        ``backbone_lr_scale`` option (0 leaves them out); ``no_decay`` at ``lr`` without
        weight decay. Groups in that order."""
        scale = float(self.options["backbone_lr_scale"])
        if not 0 <= scale <= 10:
            raise ConfigError("backbone_lr_scale must be between 0 and 10.")
        lr = self.config.lr
        slow_ids = {id(p) for trunk in trunks for p in trunk.parameters()}
        plain_ids = {id(p) for p in no_decay}
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        rest = [p for p in trainable if id(p) not in slow_ids and id(p) not in plain_ids]
        groups = [{"params": rest + list(extra), "lr": lr}]
        slow = [p for p in trainable if id(p) in slow_ids]
        if slow and scale > 0:
            groups.append({"params": slow, "lr": lr * scale})
        if no_decay:
            groups.append({"params": list(no_decay), "lr": lr, "weight_decay": 0.0})
        return {"main": torch.optim.AdamW(groups, lr=lr, weight_decay=self.config.weight_decay)}


def freeze_backbone_blocks(trunk: nn.Module, blocks: int) -> list[nn.Module]:
    """Freeze the stem and the first ``blocks`` stages of a timm EfficientNet-style trunk.

    Returns the frozen modules, which the procedure keeps in eval mode (BatchNorm statistics
    frozen too) from then on.
    """
    if blocks <= 0:
        return []
    stages = getattr(trunk, "blocks", None)
    if stages is None:
        raise ConfigError("freeze_blocks needs a backbone with stages (efficientnet_lite0).")
    if blocks > len(stages):
        raise ConfigError(f"freeze_blocks must be at most {len(stages)} for this backbone.")
    frozen = [
        m for m in (getattr(trunk, "conv_stem", None), getattr(trunk, "bn1", None)) if m is not None
    ]
    frozen += list(stages[:blocks])
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
    return frozen
