"""What the installed models are, read from their files without torch.

A checkpoint is a safetensors file: 8 bytes of little-endian header length, a JSON header (each
tensor's dtype, shape and byte range, plus ``__metadata__``), then the tensor bytes. Its
SketchSearch metadata sits in the header under ``METADATA_KEY``, so listing the installed models,
naming them and finding the default needs only ``json``: ``sketch-search models`` and the app's
model chooser run before torch is imported (``engine.models`` imports torch and timm, seconds
on a small machine). ``engine.models.checkpoint`` builds and loads the networks.

``METHODS`` names the built-in methods in registration order, for the same reason; a test checks
that it matches ``engine.models.list_methods()``, so a method added there must be added here.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import assets
from engine.errors import CheckpointError
from engine.paths import models_dir

log = logging.getLogger(__name__)

METHODS = ("baseline", "dssa", "semi3", "dsh", "gdh", "anchor")
SHIPPED_DIR = Path(assets.__file__).resolve().parent / "models"
DEFAULT_NAME = "default.safetensors"
FORMAT = "sketch-search-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "sketch_search"
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself, read without building the model."""

    path: Path
    method: str
    bits: int
    backbone: str
    config: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, Any]:
        """The binary-code retrieval figures of the last stored evaluation (empty if none)."""
        report = self.metadata.get("metrics") or {}
        return dict(report.get("metrics", report))

    @property
    def name(self) -> str:
        """The model's name everywhere it is shown: the one saved in it, else the file's stem."""
        return self.metadata.get("name") or self.path.stem

    @property
    def model_id(self) -> str | None:
        """The id of the weights (``<method>-<bits>b-<digest>``) as stored when saved."""
        return self.metadata.get("model_id")


def _safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file, checked as safetensors checks it: its length,
    that it is a JSON object, and that the tensors' byte ranges end where the file ends."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw_length = fh.read(8)
        if len(raw_length) < 8:
            raise ValueError("the file is shorter than a safetensors header")
        (length,) = struct.unpack("<Q", raw_length)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise ValueError(f"header length {length} does not fit the file ({size} bytes)")
        header = json.loads(fh.read(length).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            start, stop = (int(v) for v in entry["data_offsets"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"tensor {key!r} has no valid data_offsets") from exc
        if not 0 <= start <= stop:
            raise ValueError(f"tensor {key!r} has invalid data_offsets")
        end = max(end, stop)
    if 8 + length + end != size:
        raise ValueError(
            f"the tensors need {8 + length + end} bytes but the file has {size} (incomplete?)"
        )
    return header


def read_checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """Read and validate a checkpoint's metadata; raises CheckpointError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(PICKLE_MAGIC):
        raise CheckpointError(
            f"{path.name} is a pickle-based PyTorch file. SketchSearch never unpickles checkpoints "
            "(a pickle can run any code); use a .safetensors checkpoint saved by sketch-search."
        )
    try:
        header = _safetensors_header(path)
    except (OSError, ValueError) as exc:  # JSON and UTF-8 errors are ValueErrors
        raise CheckpointError(
            f"{path.name} is not a readable safetensors checkpoint: {exc}"
        ) from exc
    metadata = header.get("__metadata__")
    raw = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if raw is None:
        raise CheckpointError(
            f"{path.name} is a safetensors file without SketchSearch metadata; "
            "it was not saved by sketch-search."
        )
    try:
        meta = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path.name} has corrupt metadata: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} is not a SketchSearch checkpoint.")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path.name} has checkpoint format {version}; this version reads up to "
            f"{FORMAT_VERSION}. Update sketch-search."
        )
    try:
        return CheckpointInfo(
            path=path,
            method=str(meta["method"]),
            bits=int(meta["bits"]),
            backbone=str(meta["backbone"]),
            config=dict(meta["config"]),
            metadata=meta,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path.name} lacks required metadata ({exc}).") from exc


def default_checkpoint() -> Path | None:
    """The shipped default checkpoint, if this installation has one."""
    path = SHIPPED_DIR / DEFAULT_NAME
    return path if path.is_file() else None


def installed_checkpoints() -> list[CheckpointInfo]:
    """Valid checkpoints shipped with the app, then the user's; unreadable ones are logged."""
    found: list[CheckpointInfo] = []
    for folder in (SHIPPED_DIR, models_dir()):
        for path in sorted(folder.glob("*.safetensors")):
            try:
                found.append(read_checkpoint_info(path))
            except CheckpointError as exc:
                log.warning("Skipping checkpoint %s: %s", path, exc)
    return found


def model_name(model: Any) -> str:
    """The one name a model is shown by (chooser, status bar, Train panel, ``query``): its
    checkpoint's name (``CheckpointInfo.name``), else its method for a model made in memory.
    ``model`` is a loaded model (with ``checkpoint_info`` when it came from a file) or a
    ``CheckpointInfo``."""
    if isinstance(model, CheckpointInfo):
        return model.name
    info = getattr(model, "checkpoint_info", None)
    return info.name if info is not None else str(model.method)
