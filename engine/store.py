"""Installed models: the checkpoints shipped in ``assets/models`` and the user's own, and the
one call that turns a user's choice (nothing, a method name, a checkpoint path) into a model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from engine.devices import pick_device
from engine.errors import CheckpointError, SketchSearchError
from engine.model_files import (  # noqa: F401  (SHIPPED_DIR, DEFAULT_NAME: re-exported)
    DEFAULT_NAME,
    SHIPPED_DIR,
    default_checkpoint,
    installed_checkpoints,
)
from engine.models import SketchHashModel, create, list_methods, load_checkpoint

log = logging.getLogger(__name__)

FRESH_SEED = 0


def create_fresh(method: str, **config) -> SketchHashModel:
    """A new model for inference (eval mode) with a fixed seed, so its weights, and so its
    model id, are reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FRESH_SEED)
        return create(method, **config).eval()


def load_model(spec: str | os.PathLike | None = None, device: str | None = None) -> SketchHashModel:
    """The model a user asked for: None = the shipped default; a method name = that method's
    shipped checkpoint (``<method>*.safetensors`` in assets) or, if none, a fresh model; anything
    else = a checkpoint path."""
    target = pick_device(device)
    if spec is None or str(spec) == "":
        path = default_checkpoint()
        if path is None:
            raise CheckpointError(
                "No default model is installed. Train one with 'sketch-search train' "
                "or pass --model with a checkpoint or method name."
            )
        return load_checkpoint(path, device=target)
    text = str(spec)
    if text in list_methods():
        shipped = [i for i in installed_checkpoints() if i.method == text]
        if shipped:
            return load_checkpoint(shipped[0].path, device=target)
        log.warning("No trained '%s' checkpoint is installed; using an untrained one.", text)
        return create_fresh(text).to(target)
    path = Path(text).expanduser()
    if not path.exists():
        raise SketchSearchError(
            f"'{text}' is neither a checkpoint file nor a method ({', '.join(list_methods())})."
        )
    return load_checkpoint(path, device=target)
