"""What transfer needs from the run above it, declared here and implemented by `recdistill.run`:
a model cache and a model factory. Transfer never imports the run or a task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from omegaconf import DictConfig
from torch import nn


class ModelCache(Protocol):
    """Get-or-fit of models trained on ground truth, keyed by everything that determines them."""

    def get_or_fit(self, role: str, fit: Callable[[str], tuple[nn.Module, dict]], **overrides: Any
                   ) -> tuple[nn.Module, dict]:
        """(model, info with `key` and `from_cache`); `fit(key)` trains it on a cache miss;
        `overrides` replace parts of the key (see `recdistill.run.cache.model_key`)."""


class ModelFactory(Protocol):
    """A freshly initialised model of `model_cfg` (seeded), wired to the data's side information."""

    def __call__(self, model_cfg: Any, seed: int) -> nn.Module: ...


@dataclass
class TransferContext:
    """The run's config, data and services as transfer sees them; `data` is the task's prepared
    data (split, training inputs, validation inputs)."""

    cfg: DictConfig
    data: Any
    cache: ModelCache
    new_model: ModelFactory
    device: torch.device
    run_dir: Path
