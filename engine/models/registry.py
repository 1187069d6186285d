"""The method registry: ``create(method, **cfg)`` and ``list_methods()``.

Each method module registers its model class with ``@register``; ``engine.models`` imports the
method modules in a fixed order so the registry is complete once the package is imported.
"""

from __future__ import annotations

from typing import Any

from engine.errors import UnknownMethodError
from engine.models.base import ModelConfig, SketchHashModel

_METHODS: dict[str, type[SketchHashModel]] = {}


def register(cls: type[SketchHashModel]) -> type[SketchHashModel]:
    """Class decorator: make a method available under ``cls.method``."""
    name = cls.method
    if name in _METHODS and _METHODS[name] is not cls:
        raise ValueError(f"Method '{name}' is registered twice.")
    _METHODS[name] = cls
    return cls


def list_methods() -> list[str]:
    """Names of the registered methods, in registration order."""
    return list(_METHODS)


def get_method(name: str) -> type[SketchHashModel]:
    try:
        return _METHODS[name]
    except KeyError:
        raise UnknownMethodError(
            f"Unknown method '{name}'; available: {', '.join(_METHODS) or 'none'}."
        ) from None


def make_config(method: str, **cfg: Any) -> ModelConfig:
    return get_method(method).config_class.from_dict(cfg)


def create(method: str, **cfg: Any) -> SketchHashModel:
    """A new model of ``method`` with config values ``cfg`` (validated by the method's config)."""
    cls = get_method(method)
    return cls(cls.config_class.from_dict(cfg))
