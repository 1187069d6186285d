"""Training on several processes: torchrun's environment, DistributedDataParallel, and the few
collectives the trainer and the procedures need.

``join_from_environment(device)`` reads what ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` or its own store) and joins the process group:
NCCL when the run trains on CUDA (each process on GPU ``LOCAL_RANK``), gloo on the CPU. With no
such environment, or ``WORLD_SIZE=1``, it returns ``SINGLE``: one process, no process group, and
every method below the identity, so single-process training runs the very code it ran before.

What a ``Distributed`` gives the trainer (``training.trainer``):
- ``shard(batches)``: this rank's share of an epoch's batches. Every rank builds the same list
  (the same seeded generator); rank r takes batches r, r + N, r + 2N, ... (N processes), the list
  padded by wrapping around to a multiple of N, as ``torch.utils.data.DistributedSampler`` pads,
  so every rank takes the same number of steps and every batch is trained on. After k steps of
  every rank, the first k * N batches of the epoch are done.
- ``gradient_sync(modules, device)``: a ``DistributedDataParallel`` over everything that trains
  (the model and the procedure's classifiers or discriminators), used as the identity on a loss
  before its backward (``StepContext.update``): DDP's reducer then averages every gradient that
  backward produces across the ranks, in buckets, while the backward runs. The procedures keep
  calling the model's parts directly; ``find_unused_parameters`` lets a loss use only some of
  them (GDH's generator and discriminator losses take turns). Buffers are not broadcast at each
  step (``broadcast_buffers=False``: an in-place broadcast between forward and backward could
  rewrite statistics that a frozen BatchNorm's backward still needs); ``broadcast_module_buffers``
  copies rank 0's (BatchNorm statistics, fitted code projections) to every rank where the trainer
  needs them equal.
- ``any(flag)``: a cancel seen by one rank stops every rank at the same step.
- ``check_identical(value, what)``: before every save the ranks compare digests of their
  weights and procedure state, and a divergence is an error, never a silently wrong checkpoint.

For the procedures' steps outside backprop: ``chunk(n)`` (a rank's contiguous rows of a pass
over the training set) with ``gather_rows`` (every rank's rows, in order), ``gather_indexed``
(each rank's (indices, values) of a step), ``broadcast_tensors`` and ``broadcast_object``
(rank 0's result to every rank).
"""

from __future__ import annotations

import datetime
import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist
from torch import nn

from engine.devices import pick_device
from engine.errors import ConfigError, DistributedError

log = logging.getLogger(__name__)

T = TypeVar("T")

TIMEOUT = datetime.timedelta(minutes=60)
"""How long a collective waits for the other ranks: longer than rank 0's largest lone job (fitting
a model's codes on the whole training set at the last epoch end) is expected to take."""


class _LossIdentity(nn.Module):
    """Everything that trains, under one module whose forward returns the loss it is given."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(dict(modules))

    def forward(self, loss: torch.Tensor) -> torch.Tensor:
        return loss


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: ``rank`` of ``world_size`` processes (one: ``SINGLE``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "nccl" or "gloo"; None: one process, no process group

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and logs and evaluates."""
        return self.rank == 0

    # ------------------------------------------------------------------ devices and batches
    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on: CUDA device ``LOCAL_RANK`` when the run is on CUDA."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, batches: Sequence[T]) -> list[T]:
        """This rank's batches of an epoch: every ``world_size``-th from ``rank``, wrapping."""
        if not self.active:
            return list(batches)
        n, w = len(batches), self.world_size
        return [batches[(k * w + self.rank) % n] for k in range(-(-n // w))]

    def chunk(self, n: int) -> range:
        """This rank's contiguous rows of ``n`` (balanced; all of them in one process)."""
        return range(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    # ------------------------------------------------------------------ gradients
    def gradient_sync(
        self, modules: Mapping[str, nn.Module], device: torch.device
    ) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """A DDP over ``modules`` to pass each loss through before its backward; None alone.

        Constructing it broadcasts rank 0's parameters and buffers to every rank."""
        if not self.active:
            return None
        ddp = nn.parallel.DistributedDataParallel
        # buffers synced at construction only (the name of that switch changed in torch 2.14)
        no_step_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(ddp).parameters
            else {"broadcast_buffers": False}
        )
        return ddp(
            _LossIdentity(modules),
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
            **no_step_sync,
        )

    # ------------------------------------------------------------------ collectives
    def _comm(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` where the backend can send it (NCCL: this rank's GPU)."""
        if self.backend == "nccl":
            return tensor.to(torch.device("cuda", self.local_rank))
        return tensor.cpu()

    def broadcast_tensors(self, tensors: Sequence[torch.Tensor]) -> None:
        """Overwrite ``tensors`` in place with rank 0's (same shapes and dtypes on every rank)."""
        if not self.active:
            return
        for tensor in tensors:
            buffer = self._comm(tensor.detach())
            torch_dist.broadcast(buffer, 0)
            if buffer is not tensor:
                with torch.no_grad():
                    tensor.copy_(buffer)

    def broadcast_module_buffers(self, modules: Sequence[nn.Module]) -> None:
        """Rank 0's buffers (BatchNorm statistics, fitted projections) in every rank's modules."""
        self.broadcast_tensors([b for m in modules for b in m.buffers()])

    def broadcast_object(self, value: T) -> T:
        """Rank 0's ``value`` (anything picklable) on every rank."""
        if not self.active:
            return value
        box = [value]
        torch_dist.broadcast_object_list(box, 0, device=self._comm(torch.zeros(1)).device)
        return box[0]

    def all_gather_object(self, value: Any) -> list[Any]:
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, value)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any."""
        if not self.active:
            return flag
        t = self._comm(torch.tensor([1 if flag else 0], dtype=torch.int64))
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
        return bool(t.item())

    def all_gather_rows(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``rows`` (n_r, ...), in rank order, on ``rows``'s device.

        The row counts may differ; the trailing shape and dtype must be the same on every rank,
        except that a rank with no rows may pass any empty tensor."""
        if not self.active:
            return [rows]
        count = rows.shape[0] if rows.ndim else 0
        meta = self.all_gather_object((count, tuple(rows.shape[1:]) if count else None))
        counts = [c for c, _ in meta]
        trailing = next((shape for _, shape in meta if shape is not None), ())
        padded = torch.zeros((max(counts), *trailing), dtype=rows.dtype, device=rows.device)
        if count:
            padded[:count] = rows
        padded = self._comm(padded)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        torch_dist.all_gather(parts, padded)
        return [p[:c].to(rows.device) for p, c in zip(parts, counts, strict=True)]

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's ``rows`` concatenated in rank order: the whole of a pass that each rank
        ran over its ``chunk``. Alone, ``rows`` itself."""
        if not self.active:
            return rows
        return torch.cat(self.all_gather_rows(rows))

    def gather_indexed(
        self, index: torch.Tensor, values: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every rank's (``index``, ``values``) pair of a step, in rank order (the order of their
        batches in the epoch), for writing all of them into a per-sample table."""
        if not self.active:
            return [(index, values)]
        indices = self.all_gather_rows(index)
        return list(zip(indices, self.all_gather_rows(values), strict=True))

    def check_identical(self, value: str, what: str) -> None:
        """Raise ``DistributedError`` unless every rank passes the same ``value``."""
        if not self.active:
            return
        values = self.all_gather_object(value)
        if len(set(values)) > 1:
            raise DistributedError(
                f"The training processes hold different {what} (rank: value {values}); "
                "this is a bug in the distributed training of this method, please report it."
            )

    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.active:
            torch_dist.barrier()

    def close(self) -> None:
        """Leave the process group (every rank, once its last collective is done)."""
        if self.active and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


SINGLE = Distributed()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"The environment variable {name}={value!r} is not a number.") from None


def join_from_environment(device: str | None = None) -> Distributed:
    """The process group torchrun's environment describes, joined; ``SINGLE`` without one.

    ``device`` is the training config's (``auto``, ``cpu``, ``cuda``, ...): NCCL for CUDA, else
    gloo."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    backend = "nccl" if pick_device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"Process {rank} was given GPU {local_rank}, but this machine has "
                f"{torch.cuda.device_count()}; pass --nproc_per_node at most that many."
            )
        torch.cuda.set_device(local_rank)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend, rank=rank, world_size=world, timeout=TIMEOUT)
    log.info("Process %d of %d joined the %s process group", rank, world, backend)
    return Distributed(rank, world, local_rank, backend)
