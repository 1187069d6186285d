"""Models: the method registry, the base interface, checkpoints and model loading.

Importing this package registers every built-in method, in a fixed order.
"""

from engine.models import (  # noqa: I001  (registration order, not alphabetical)
    baseline,  # noqa: F401  (registers "baseline")
    dssa,  # noqa: F401  (registers "dssa")
    semi3,  # noqa: F401  (registers "semi3")
    dsh,  # noqa: F401  (registers "dsh")
    gdh,  # noqa: F401  (registers "gdh")
    anchor,  # noqa: F401  (registers "anchor")
)
from engine.models.base import ModelConfig, SketchHashModel
from engine.models.checkpoint import (
    CheckpointInfo,
    load_checkpoint,
    model_id,
    read_checkpoint_info,
    resave_checkpoint,
    save_checkpoint,
)
from engine.models.registry import create, get_method, list_methods, make_config, register

__all__ = [
    "CheckpointInfo",
    "ModelConfig",
    "SketchHashModel",
    "create",
    "get_method",
    "list_methods",
    "load_checkpoint",
    "make_config",
    "model_id",
    "read_checkpoint_info",
    "register",
    "resave_checkpoint",
    "save_checkpoint",
]
