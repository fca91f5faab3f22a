"""The contract every dataset reader follows, so `load_dataset`, `recdistill data` and the config
schema know a dataset only through its reader.

A reader module in this package defines one `DatasetReader` subclass with:
    Config    a dataclass extending `DatasetConfig`; its `name` default is the dataset's name, and it
              is the schema of the `dataset` config group (Hydra's `dataset_schema/<name>`)
    read      (cfg, seed) -> RecData: the whole dataset, before the common min_user_interactions filter
    fixtures  (directory) -> {case: cfg}: tiny inputs written into `directory`, read by the contract test
and, where it has them:
    data_key  (options, seed) -> dict: what determines the data, for split cache keys (default: every
              option except cache_dir)
    aliases   other names `recdistill data fetch|info` accepts (e.g. "ml-100k")
    fetch     (cfg) -> str: download and verify the data into the cache, return where it is
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

from recdistill.data.config import DatasetConfig
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError


class DatasetReader(abc.ABC):
    """One dataset: its typed config, how to read it and (optionally) how to download it."""

    Config: ClassVar[type[DatasetConfig]]
    aliases: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        """The dataset's name: the `name` default of its Config (what `dataset.name` holds)."""
        return str(self.Config.name)

    @property
    def fetchable(self) -> bool:
        """True when the reader downloads its data (defines `fetch`)."""
        return type(self).fetch is not DatasetReader.fetch

    def data_key(self, options: dict[str, Any], seed: int) -> dict[str, Any]:
        """What determines the data that `options` (the dataset config as a dict) read, for cache keys
        of splits: every option except where the cache lives. Readers whose options include where a
        copy of the same data comes from, or whose data depends on the seed, override this."""
        return {key: value for key, value in options.items() if key != "cache_dir"}

    @abc.abstractmethod
    def read(self, cfg: DatasetConfig, seed: int) -> RecData:
        """The dataset described by `cfg` (`seed` matters only to generated data)."""

    @abc.abstractmethod
    def fixtures(self, directory: Path) -> dict[str, DatasetConfig]:
        """Configs of tiny inputs of every kind this reader reads, written into `directory`."""

    def fetch(self, cfg: DatasetConfig) -> str:
        """Download and verify the data into the cache; return a line saying where it is."""
        raise ConfigError(f"dataset {self.name!r} has nothing to fetch (its reader downloads nothing); "
                          f"`recdistill data info {self.name}` reads it")
