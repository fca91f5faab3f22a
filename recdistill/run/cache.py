"""The model cache: every model trained on ground truth alone (the teacher, the student-alone
baseline, transfer's source model) is trained once per key and then loaded, under a file lock so
concurrent sweep jobs wait for the one training it. Under torchrun, rank 0 alone takes the lock,
decides whether the entry is usable and writes it; the other ranks follow its decision.

`model_key` is the one key function: a hash of everything that determines such a model.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf
from torch import nn

from recdistill.models.checkpoint import load_model, save_model
from recdistill.training import distributed
from recdistill.utils.runinfo import stable_hash

log = logging.getLogger(__name__)

#: Part of every model key; bump it when model code changes what a checkpoint means.
MODEL_CACHE_FORMAT = 4
#: Dataset keys that say where the data came from, not what it is.
DATA_LOCATION_KEYS = ("cache_dir", "source")
#: Evaluator keys that change how fast evaluation runs or what is reported, never which epoch is selected.
REPORTING_KEYS = ("latency_batch_size", "latency_repeats", "latency_warmup", "user_batch_size", "item_chunk", "ks")
#: Roles whose model, loop and seed are the teacher's (`source`: transfer's source model).
TEACHER_LIKE = ("teacher", "source")


def role_seed(cfg: DictConfig, role: str) -> int:
    """The teacher (and its source model) has its own seed, so a sweep over student seeds shares one teacher."""
    return cfg.teacher_seed if role in TEACHER_LIKE else cfg.seed


def model_key(cfg: DictConfig, split_hash: str | None, role: str, **overrides: Any) -> str:
    """Hash of everything that determines `role`'s model trained on ground truth: the task, the data
    and split, the model config, its training loop and seed, the evaluator settings that select its
    epoch, and the transfer settings when the teacher is transferred. `overrides` replace parts
    (transfer's source model drops the target-only split settings, for instance)."""
    container = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    dataset = {k: v for k, v in container(cfg.dataset).items() if k not in DATA_LOCATION_KEYS}
    selection = {k: v for k, v in container(cfg.evaluator).items() if k not in REPORTING_KEYS}
    loop = "teacher" if role in TEACHER_LIKE else "student"
    parts: dict[str, Any] = {
        "task": cfg.task, "dataset": dataset, "split": container(cfg.split), "split_key": split_hash,
        "model": container(cfg[loop]), "trainer": container(cfg.trainer[loop]), "seed": role_seed(cfg, role),
        "selection": selection, "format": MODEL_CACHE_FORMAT,
    }
    if role in TEACHER_LIKE and cfg.transfer.mode != "none":
        parts["transfer"] = container(cfg.transfer)
    parts.update(overrides)
    return stable_hash(parts)


class ModelCache:
    """`get_or_fit(role, fit)`: load `role`'s model from `<root>/<role>s/<key>.pt`, or fit and save it.

    `after_load(model)` runs on a model loaded from the cache (ranking models refit their counts
    from the training split); a cache entry written by incompatible code is retrained."""

    def __init__(self, cfg: DictConfig, root: Path, split_key: str, device: torch.device,
                 after_load: Callable[[nn.Module], None] | None = None) -> None:
        self.cfg, self.root, self.split_key, self.device, self.after_load = cfg, root, split_key, device, after_load

    def key(self, role: str, **overrides: Any) -> str:
        """The key of `role`'s model under this run's config (see `model_key`)."""
        return model_key(self.cfg, self.split_key, role, **overrides)

    def get_or_fit(self, role: str, fit: Callable[[str], tuple[nn.Module, dict]], **overrides: Any
                   ) -> tuple[nn.Module, dict]:
        """(model, info) of `role`; `fit(key)` trains it when the cache has no usable entry. `info`
        holds what `fit` returned plus `key` and `from_cache`."""
        key = self.key(role, **overrides)
        cached = self.root / f"{role}s" / f"{key}.pt"
        main = distributed.is_main()  # always, without torchrun
        if main:
            cached.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(cached.with_suffix(".lock"))) if main else nullcontext():
            loaded = self._load(role, key, cached) if main else None
            if distributed.share(loaded is not None):  # torchrun: the others load what rank 0 found usable
                loaded = loaded or self._load(role, key, cached)
                assert loaded is not None, f"rank {distributed.rank()} could not load {cached}, which rank 0 loaded"
                return loaded
            log.info("training %s %s on ground truth", role, key)
            model, extra = fit(key)
            if main:
                save_model(cached, model, extra=extra)  # atomic: a partly written entry is never used
        distributed.barrier()
        return model, {**extra, "key": key, "from_cache": False}

    def _load(self, role: str, key: str, cached: Path) -> tuple[nn.Module, dict] | None:
        """(model, info) from the cache entry `cached`, or None when there is none or it is unusable."""
        if not cached.exists():
            return None
        log.info("%s %s found in cache %s", role, key, cached)
        try:
            model, extra = load_model(cached, self.device)
            if self.after_load is not None:
                self.after_load(model)
            return model, {**extra, "key": key, "from_cache": True}
        except (RuntimeError, KeyError, EOFError) as error:  # written by incompatible code: retrain
            log.warning("cached %s %s is unusable (%s); training it again", role, cached, error)
            return None
