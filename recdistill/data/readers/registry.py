"""Find dataset readers by name: every module in `recdistill.data.readers` that defines a concrete
`DatasetReader` subclass is picked up, so adding a dataset is one reader file plus one YAML."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import asdict, fields, is_dataclass
from functools import cache
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import recdistill.data.readers as readers_package
from recdistill.data.config import DatasetConfig
from recdistill.data.readers.base import DatasetReader
from recdistill.errors import ConfigError


@cache
def dataset_readers() -> dict[str, DatasetReader]:
    """Map dataset name (the `name` default of its reader's Config) to reader."""
    found: dict[str, DatasetReader] = {}
    for info in pkgutil.iter_modules(readers_package.__path__):
        module = importlib.import_module(f"{readers_package.__name__}.{info.name}")
        for value in vars(module).values():
            if not (isinstance(value, type) and issubclass(value, DatasetReader) and not inspect.isabstract(value)
                    and value.__module__ == module.__name__):  # a reader imported from elsewhere counts there
                continue
            reader = value()
            if reader.name in ("", "???") or reader.name in found:
                raise ConfigError(f"{module.__name__}.{value.__name__}.Config needs a name default of its own "
                                  f"(got {reader.name!r}; taken: {', '.join(sorted(found))})")
            found[reader.name] = reader
    return found


def get_reader(name: str) -> DatasetReader:
    """The reader of dataset `name`, or a ConfigError listing the valid names."""
    readers = dataset_readers()
    if name not in readers:
        raise ConfigError(f"dataset.name={name!r} is not one of {', '.join(sorted(readers))}")
    return readers[name]


def resolve_alias(name: str) -> str:
    """The dataset name for a name or one of its aliases ("ml-100k" -> "movielens_100k")."""
    for reader in dataset_readers().values():
        if name == reader.name or name in reader.aliases:
            return reader.name
    return name


def names_and_aliases() -> list[str]:
    """Every name and alias the registry accepts, sorted (the command line's choices)."""
    return sorted(n for reader in dataset_readers().values() for n in (reader.name, *reader.aliases))


def dataset_config(cfg: DatasetConfig | Mapping[str, Any] | DictConfig) -> DatasetConfig:
    """The typed Config of the reader that `cfg.name` names, from a dataclass, mapping or config node;
    unknown keys and wrong types are a ConfigError naming the `dataset.` key."""
    if is_dataclass(cfg) and not isinstance(cfg, type):
        if type(cfg) is get_reader(str(cfg.name)).Config:
            return cfg
        raw = asdict(cfg)
    elif isinstance(cfg, DictConfig):
        raw = OmegaConf.to_container(cfg, resolve=True)
    else:
        raw = dict(cfg)
    reader = get_reader(str(raw.get("name", "???")))
    valid = [f.name for f in fields(reader.Config)]
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise ConfigError(f"dataset {reader.name!r} has no option(s) {', '.join('dataset.' + k for k in unknown)}; "
                          f"valid: {', '.join(valid)}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(reader.Config), raw))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"dataset {reader.name!r}: {exc}") from exc
