"""Compute device choice: CUDA, then MPS, then CPU, unless the user names one."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from engine.errors import DeviceError

log = logging.getLogger(__name__)


def pick_device(requested: str | None = None) -> torch.device:
    """Return the device to run models on; ``requested`` ("cuda", "cuda:1", "mps", "cpu") wins."""
    if requested in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise DeviceError(f"'{requested}' is not a device name; use cpu, cuda or mps.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no CUDA GPU is available; use --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(
            "MPS was requested but is not available on this machine; use --device cpu."
        )
    return device


def available_devices() -> list[str]:
    """The device names a person may choose: "auto", "cpu", then "cuda" and "mps" if present."""
    found = ["auto", "cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def describe_device(device: torch.device) -> str:
    """A short human-readable name, e.g. 'CUDA (NVIDIA H100)' or 'CPU'."""
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "MPS"
    return "CPU"


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``threads`` for the block (None: left as they are), then set
    back, also when the block raises."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threads_beside_gui() -> int:
    """torch's threads for the app's live searches: every core but one. While a person draws,
    the GUI thread paints each stroke as the last one's query encodes; a torch thread on the
    core it needs is left waiting, and every operation waits for its slowest thread. Measured in
    the app (Xvfb, 2 cores, 40 replayed doodles a run, medians; DEVELOPERS.md): encoding 12.9-14.0
    ms on one thread against 16.8-19.1 on two, the whole query 20-22 ms against 24-28."""
    return max(1, (os.cpu_count() or 1) - 1)


@contextmanager
def cpu_threads_beside(workers: int, device: torch.device) -> Iterator[None]:
    """While indexing on the CPU: torch's threads set to the cores ``workers`` decoding threads
    leave (at least one), then set back. Decoding and the model share the cores; torch's idle
    threads spin between operations and take the time decoding needs (DEVELOPERS.md: on 2 cores
    the default indexed 18-20 photos/s with 2 torch threads, 23.6 with 1). The count is set on
    the indexing thread (and is what threads started meanwhile begin with); the app's searches
    set their own around each query (``threads_beside_gui``, ``torch_threads``)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    with torch_threads(max(1, min(before, (os.cpu_count() or 1) - workers))):
        yield
