"""Self-describing checkpoints: safetensors weights with JSON metadata in the same file.

The metadata (under the header key ``sketch_search``) names the format version, method, config
(bits, backbone, method options), preprocessing, training data summary and metrics. Loading reads
tensors with safetensors only: nothing is ever unpickled, and pickle-based PyTorch files are
refused with a message saying so.

A model's id is derived from its weights (method, bits and a digest of every tensor), so codes in
the catalog (and the search index built from them) are tied to exactly the weights that made them.

Weights can be stored as float16 (``weights_dtype="float16"``) to halve a shipped checkpoint; they
load back into the float32 network, and the stored model id is that of the rounded weights, so
codes made before saving and after loading are never mixed under one id. Keys under a model's
``full_precision_prefixes`` (the fitted binarisation of ``engine.models.fitted``) stay float32,
so fitted means and projections reload bit-exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from engine.errors import CheckpointError, ConfigError, UnknownMethodError

# the header side (what a checkpoint says about itself) is torch-free, for a fast start-up
from engine.model_files import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEY,
    CheckpointInfo,  # noqa: F401  (re-exported by engine.models)
    read_checkpoint_info,
)
from engine.models.base import SketchHashModel
from engine.models.registry import get_method
from engine.sketch import SKETCH_FORMAT_VERSION

log = logging.getLogger(__name__)

WEIGHT_DTYPES = ("float32", "float16")


def model_id(model: SketchHashModel) -> str:
    """A stable id for these exact weights: '<method>-<bits>b-<12 hex digits>'."""
    return _weights_id(model.method, model.bits, model.state_dict())


def _weights_id(method: str, bits: int, state: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(state.items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{method}-{bits}b-{digest.hexdigest()[:12]}"


def _stored_tensors(model: SketchHashModel, weights_dtype: str) -> dict[str, torch.Tensor]:
    """The state dict as written: floating tensors cast to ``weights_dtype`` (but those under
    the model's ``full_precision_prefixes``); refuses overflow."""
    if weights_dtype not in WEIGHT_DTYPES:
        raise ConfigError(
            f"weights_dtype '{weights_dtype}' is not supported; choose one of {WEIGHT_DTYPES}."
        )
    dtype = getattr(torch, weights_dtype)
    tensors = {}
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        exact = key.startswith(model.full_precision_prefixes)
        if tensor.is_floating_point() and tensor.dtype != dtype and not exact:
            cast = tensor.to(dtype)
            if not torch.isfinite(cast).all() and torch.isfinite(tensor).all():
                raise ConfigError(
                    f"Weight {key} does not fit in {weights_dtype}; save this model as float32."
                )
            tensor = cast
        tensors[key] = tensor
    return tensors


def save_checkpoint(
    model: SketchHashModel,
    path: str | os.PathLike,
    *,
    weights_dtype: str = "float32",
    **metadata: Any,
) -> Path:
    """Write ``model`` to ``path`` atomically (temp file + rename); extra metadata goes in JSON.

    ``weights_dtype="float16"`` stores floating weights at half size; the id recorded is that of
    the network as it will load (float32 holding the rounded values).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = _stored_tensors(model, weights_dtype)
    as_loaded = {
        k: t.to(v.dtype) if t.is_floating_point() else t
        for (k, t), v in zip(tensors.items(), model.state_dict().values(), strict=True)
    }
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": model.method,
        "bits": model.bits,
        "backbone": model.config.backbone,
        "config": model.config.to_dict(),
        "preprocessing": {
            "sketch_size": model.sketch_size,
            "photo_size": model.photo_size,
            "sketch_format": SKETCH_FORMAT_VERSION,
            "needs_edges": model.needs_edges,
        },
        "model_id": _weights_id(model.method, model.bits, as_loaded),
        "weights_dtype": weights_dtype,
        **metadata,
    }
    try:
        header = json.dumps(meta, sort_keys=True)
    except TypeError as exc:
        raise ConfigError(f"Checkpoint metadata must be JSON-serialisable: {exc}") from exc
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={METADATA_KEY: header})
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a model is shared like any other file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(
    path: str | os.PathLike,
    *,
    method: str | None = None,
    bits: int | None = None,
    device: torch.device | str | None = None,
) -> SketchHashModel:
    """Build the model a checkpoint describes and load its weights; refuse any mismatch."""
    info = read_checkpoint_info(path)
    name = info.path.name
    if method is not None and info.method != method:
        raise CheckpointError(f"{name} is a '{info.method}' checkpoint, not '{method}'.")
    if bits is not None and info.bits != bits:
        raise CheckpointError(f"{name} makes {info.bits}-bit codes, not {bits}-bit.")
    try:
        cls = get_method(info.method)
        config = cls.config_class.from_dict(info.config)
    except (UnknownMethodError, ConfigError) as exc:
        raise CheckpointError(f"{name} cannot be built by this version: {exc}") from exc
    if config.bits != info.bits:
        raise CheckpointError(f"{name} is inconsistent: its config and header disagree on bits.")
    model = cls(config)
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(info.path), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                tensors[key] = fh.get_tensor(key)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{name} has unreadable weights: {exc}") from exc
    _load_weights(model, tensors, name)
    if device is not None:
        model.to(device)
    model.eval()
    model.checkpoint_info = info
    return model


_KEPT_ON_RESAVE = ("name", "data", "training", "metrics")


def resave_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    weights_dtype: str | None = None,
    **updates: Any,
) -> Path:
    """Load ``src`` and write it to ``dst`` keeping its name, data, training and metrics metadata.

    ``weights_dtype`` None keeps the stored precision; ``updates`` replace metadata entries.
    ``dst`` may be ``src`` (the write is atomic).
    """
    info = read_checkpoint_info(src)
    keep = {k: v for k, v in info.metadata.items() if k in _KEPT_ON_RESAVE}
    dtype = weights_dtype or info.metadata.get("weights_dtype", "float32")
    return save_checkpoint(load_checkpoint(src), dst, weights_dtype=dtype, **{**keep, **updates})


def _load_weights(model: SketchHashModel, tensors: Mapping[str, torch.Tensor], name: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{name} does not fit the {model.method} network: "
            f"{len(missing)} missing weights (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})."
        )
    for key, tensor in tensors.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{name}: weight {key} has shape {tuple(tensor.shape)}, the network needs "
                f"{tuple(expected[key].shape)}."
            )
    model.load_state_dict(tensors)  # copies cast float16 weights to the network's dtype
