"""Find model classes by name: every module in `recdistill.models` that defines a `RatingModel`
or `RankingModel` subclass with a `Config` dataclass is picked up, so adding a model is one file plus one config."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

import recdistill.models as models_package
from recdistill.errors import ConfigError
from recdistill.models.base import DataShape, RatingModel
from recdistill.models.ranking_base import RankingModel, RankingShape


@cache
def model_classes() -> dict[str, type[RatingModel | RankingModel]]:
    """Map model name (the `name` default of its Config) to class."""
    found: dict[str, type[RatingModel]] = {}
    for info in pkgutil.iter_modules(models_package.__path__):
        module = importlib.import_module(f"{models_package.__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, (RatingModel, RankingModel)) and hasattr(value, "Config"):
                found[value.Config.name] = value
    return found


def get_model_class(name: str) -> type[RatingModel | RankingModel]:
    """The model class called `name`, or a ConfigError listing the valid names."""
    classes = model_classes()
    if name not in classes:
        raise ConfigError(f"unknown model name {name!r}; valid: {', '.join(sorted(classes))}")
    return classes[name]


def build_model(config: DictConfig | dict[str, Any], shape: DataShape | RankingShape) -> RatingModel | RankingModel:
    """Build a model from its config node (validated against the model's Config schema)."""
    raw = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)
    model_class = get_model_class(str(raw.get("name")))
    valid = set(model_class.Config.__dataclass_fields__)
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise ConfigError(f"model {raw['name']!r} has no option(s) {unknown}; valid: {sorted(valid)}")
    typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(model_class.Config), raw))
    return model_class(typed, shape)
