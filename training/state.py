"""Resume state without pickle: tensors in a safetensors file, everything else in JSON.

``save_state(path, state)`` takes any nesting of dicts, lists, tuples, tensors and JSON scalars
(optimizer, scheduler and procedure ``state_dict()``s, loop counters) and writes
``<path>.safetensors`` with every tensor under a flat key and ``<path>.json`` with the structure,
tensors replaced by ``{"__tensor__": key}``. Dict keys keep their type (optimizers key their state
by int), tuples stay tuples. Python floats round-trip exactly through JSON, so a resumed run
continues bit for bit. Both files are written to temporaries and renamed, the JSON last: a run
cut off mid-save leaves the previous state readable.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.errors import CheckpointError

STATE_FORMAT = "sketch-search-resume"
STATE_VERSION = 1


def _encode(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(value, torch.Tensor):
        key = path or "root"
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, dict):
        return {
            "__dict__": [
                [k, _encode(v, tensors, f"{path}.{k}" if path else str(k))]
                for k, v in value.items()
            ]
        }
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise CheckpointError(f"Cannot store a {type(value).__name__} in the resume state ({path}).")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: _decode(v, tensors) for k, v in value["__dict__"]}
        raise CheckpointError("The resume state has an unknown entry; it was not written by us.")
    return value


def state_digest(state: Any) -> str:
    """A SHA-256 (16 hex digits) of a state as ``save_state`` stores it: its structure and the
    bytes, dtype and shape of every tensor. A state and the same state read back from disk have
    the same digest; the distributed trainer compares its ranks' digests."""
    tensors: dict[str, torch.Tensor] = {}
    body = _encode(state, tensors, "")
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode())
    for key in sorted(tensors):
        t = tensors[key]
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def state_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    base = Path(path)
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    tensor_path, json_path = state_paths(path)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    body = {"format": STATE_FORMAT, "version": STATE_VERSION, "state": _encode(state, tensors, "")}
    tmp_t = tensor_path.with_name(tensor_path.name + ".tmp")
    tmp_j = json_path.with_name(json_path.name + ".tmp")
    save_file(tensors, str(tmp_t))
    tmp_j.write_text(json.dumps(body))
    os.replace(tmp_t, tensor_path)
    os.replace(tmp_j, json_path)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    tensor_path, json_path = state_paths(path)
    if not json_path.is_file() or not tensor_path.is_file():
        raise CheckpointError(
            f"No resume state beside {path} (expected {json_path.name} and {tensor_path.name}); "
            "resume needs a checkpoint written by `sketch-search train`."
        )
    try:
        body = json.loads(json_path.read_text())
        tensors = load_file(str(tensor_path))
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"The resume state {json_path.name} is unreadable: {exc}") from exc
    if body.get("format") != STATE_FORMAT or body.get("version", 0) > STATE_VERSION:
        raise CheckpointError(f"{json_path.name} is not a resume state this version can read.")
    try:
        return _decode(body["state"], tensors)
    except KeyError as exc:
        raise CheckpointError(f"{json_path.name} refers to a missing tensor {exc}.") from exc
