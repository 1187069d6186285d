"""The registry of training procedures, keyed by the engine method name they train.

A method's training module defines a ``TrainingProcedure`` subclass with ``method = "<name>"``
and decorates it with ``@register_procedure``; this package imports the modules in a fixed order,
so the registry is complete once ``training.methods`` is imported. The four paper methods plug in
here beside ``baseline``.
"""

from __future__ import annotations

from engine.errors import UnknownMethodError
from training.procedure import TrainingProcedure

_PROCEDURES: dict[str, type[TrainingProcedure]] = {}


def register_procedure(cls: type[TrainingProcedure]) -> type[TrainingProcedure]:
    if cls.method in _PROCEDURES and _PROCEDURES[cls.method] is not cls:
        raise ValueError(f"A training procedure for '{cls.method}' is registered twice.")
    _PROCEDURES[cls.method] = cls
    return cls


def get_procedure(method: str) -> type[TrainingProcedure]:
    try:
        return _PROCEDURES[method]
    except KeyError:
        raise UnknownMethodError(
            f"No training procedure for method '{method}'; trainable: "
            f"{', '.join(_PROCEDURES) or 'none'}."
        ) from None


def list_procedures() -> list[str]:
    return list(_PROCEDURES)


from training.methods import (  # noqa: E402, I001  (registration order, not alphabetical)
    baseline,  # noqa: F401  (registers "baseline")
    dssa,  # noqa: F401  (registers "dssa")
    semi3,  # noqa: F401  (registers "semi3")
    dsh,  # noqa: F401  (registers "dsh")
    gdh,  # noqa: F401  (registers "gdh")
    anchor,  # noqa: F401  (registers "anchor")
)

__all__ = ["get_procedure", "list_procedures", "register_procedure"]


def _recipe(method: str, layout: str | None) -> dict:
    extra = getattr(get_procedure(method), "train_defaults", {}) or {}
    if layout in extra and isinstance(extra[layout], dict):
        extra = extra[layout]
    return extra


def method_train_defaults(method: str, layout: str | None) -> dict:
    """The training options a method was run with (its procedure's ``train_defaults``, per data
    layout where it has them): what the Train panel pre-fills and what ``sketch-search train``
    uses for every option that neither its flags nor its config file set."""
    return {k: v for k, v in _recipe(method, layout).items() if not isinstance(v, dict)}


def method_model_defaults(method: str, layout: str | None) -> dict:
    """The model options a method's recipe sets over its config class's defaults (the
    ``"model"`` entry of its ``train_defaults``; e.g. DSH's CPU recipe: 160 px, BatchNorm after
    the FC layers), used like ``method_train_defaults`` for a new model. The config class keeps
    the paper's values, so a config file written for it means what it meant."""
    return dict(_recipe(method, layout).get("model", {}))
