"""Fine-tuning: the model a run starts from when ``TrainConfig.init_from`` names a checkpoint.

The product brief asks that each method "can be trained or fine-tuned"; a fine-tune starts from
a checkpoint's weights (``engine.models.load_checkpoint``: safetensors only, nothing unpickled,
another method's checkpoint refused) with a fresh optimiser, schedule and procedure state, and
the run's own epochs, learning rate and data. Choices:
- The architecture is the checkpoint's. ``config.model`` may repeat its values (a config file
  or the form always names bits and backbone), but a value that differs (``--bits 32`` against
  a 64-bit checkpoint, another image size or backbone, ...) is a ConfigError naming the key,
  not a silent change: the weights would not fit, and saying so is clearer than a shape error.
  ``pretrained`` is the one key not compared: it only says where a *new* model's backbone
  weights come from, which a fine-tune replaces; the checkpoint's value is kept (procedures
  read it to give a pretrained trunk its slower learning rate).
- The run's config then holds the checkpoint's full model config and the checkpoint's absolute
  path, so the run log and the saved checkpoint record the architecture actually trained and
  where it started; the log's "config" event also names the starting model's id.
- Writing the run over the checkpoint it starts from is refused: the first epoch would replace
  the only copy of the starting model (and its log would be appended to).

Measured (one seed, single-threaded CPU, ``runs/finetune/experiment.sh``): the shipped Sketchy
``semi3-64`` on QMUL-Shoe's 115 test sketches, 64-bit codes through the index: acc@1/acc@10
5.2%/24.3% as shipped; fine-tuned 8 epochs (80 steps of 32, lr 1e-3, 2 stages frozen, 5.4 min)
11.3%/53.0%; a new model (pretrained backbone) with the same budget 6.1%/33.0%. With 115 queries
the acc@10 gap is about 3 standard errors, the acc@1 gap is within noise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError, ConfigError
from engine.models import (
    SketchHashModel,
    load_checkpoint,
    make_config,
    model_id,
    read_checkpoint_info,
)
from training.config import TrainConfig

log = logging.getLogger(__name__)

NOT_ARCHITECTURE = ("pretrained",)


def checked_model_config(
    method: str, requested: dict[str, Any], checkpoint: dict[str, Any], name: str
) -> dict[str, Any]:
    """The checkpoint's model config, after checking that ``requested`` only repeats it.

    Both are normalised by the method's config class first (so 64 and 64.0, a tuple and a list
    compare equal, and an unknown key is the config class's ConfigError).
    """
    base = make_config(method, **checkpoint).to_dict()
    asked = {k: v for k, v in requested.items() if k not in NOT_ARCHITECTURE}
    merged = make_config(method, **{**base, **asked}).to_dict()
    differ = [k for k in sorted(asked) if merged[k] != base[k]]
    if differ:
        listed = ", ".join(f"{k} {merged[k]!r} (the checkpoint has {base[k]!r})" for k in differ)
        raise ConfigError(
            f"Fine-tuning keeps the architecture of {name}; the run asks for another {listed}. "
            "Leave these settings out (or set them to the checkpoint's values), or train a new "
            "model instead."
        )
    return base


def load_start_model(
    config: TrainConfig, out: str | Path, device: torch.device
) -> tuple[SketchHashModel, TrainConfig, dict[str, Any]]:
    """(the model ``config.init_from`` holds on ``device``, the config with the checkpoint's
    model config and absolute path, what the log records about the start)."""
    path = Path(config.init_from).expanduser().resolve()
    if path == Path(out).expanduser().resolve():
        raise ConfigError(
            f"The run would write over {path.name}, the checkpoint it fine-tunes; "
            "choose another output file."
        )
    info = read_checkpoint_info(path)  # missing, pickle, not safetensors, no metadata: refused
    if info.method != config.method:
        raise CheckpointError(
            f"{path.name} is a '{info.method}' checkpoint; a '{config.method}' run cannot "
            f"fine-tune it. Train method '{info.method}' from it, or choose a '{config.method}' "
            "checkpoint."
        )
    model_config = checked_model_config(config.method, dict(config.model), info.config, path.name)
    model = load_checkpoint(path, method=config.method, device=device)
    start = {"path": str(path), "model_id": model_id(model)}
    log.info("Fine-tuning %s (%s)", path, start["model_id"])
    return model, config.replace(model=model_config, init_from=str(path)), start
