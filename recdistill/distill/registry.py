"""Find strategy classes by name: every `Strategy` subclass defined in `distill/strategies/*.py`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import lru_cache

from recdistill.distill import strategies
from recdistill.distill.strategy import Strategy
from recdistill.errors import ConfigError


@lru_cache(maxsize=1)
def available_strategies() -> dict[str, type[Strategy]]:
    """Map strategy name -> class, discovered by importing each module under `strategies/`."""
    found: dict[str, type[Strategy]] = {}
    for module_info in sorted(pkgutil.iter_modules(strategies.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{strategies.__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            # Only classes defined in this module, so imported helpers are not registered twice.
            if not issubclass(cls, Strategy) or cls.__module__ != module.__name__ or not cls.name:
                continue
            if cls.name in found:
                raise ConfigError(
                    f"strategy name {cls.name!r} is defined twice: in {found[cls.name].__module__} "
                    f"and {module.__name__}"
                )
            found[cls.name] = cls
    return found


def get_strategy_class(name: str) -> type[Strategy]:
    """The strategy class registered as `name`; ConfigError listing the valid names otherwise."""
    registry = available_strategies()
    if name not in registry:
        raise ConfigError(f"unknown distillation strategy {name!r}; valid: {sorted(registry)}")
    return registry[name]
