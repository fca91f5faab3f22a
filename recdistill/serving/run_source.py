"""Open a finished run folder for serving: its metrics.json, one role's checkpoint, and its data.

Where each role's weights live:
    teacher, student   in the model cache, `<cache_dir>/<role>s/<key>.pt` (`recdistill.run.cache.ModelCache`),
                       under the key metrics.json records (`run.teacher_key`, `run.student_key`)
    student_kd         in the run folder, `checkpoints/student_kd.pt`
The data is prepared again from the run's resolved config exactly as the run prepared it (same
split, ids and tie seed), in a scratch folder so the run folder is never written; the split key
must equal the one the run recorded, so a checkpoint is never paired with data that changed.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from recdistill.errors import ConfigError, DataError
from recdistill.models.checkpoint import load_model
from recdistill.models.ranking_base import RankingModel
from recdistill.serving.catalog import Catalog
from recdistill.tasks.base import get_task
from recdistill.tasks.ranking import RankingRun

log = logging.getLogger(__name__)

#: Roles of a run that hold a trained model, and the metrics.json key of each cached one.
CACHED_ROLES = {"teacher": "teacher_key", "student": "student_key"}
MODEL_ROLES = ("teacher", "student", "student_kd")


@dataclass
class RunRole:
    """One role of a run, ready to serve: its model (on the CPU, in eval mode) and the run's data."""

    run_dir: Path
    role: str
    metrics: dict[str, Any]  # the run's metrics.json
    cfg: DictConfig  # the run's resolved config
    data: RankingRun  # the split as the run prepared it
    model: RankingModel
    checkpoint: Path
    key: str | None  # the model cache key (teacher, student), None for student_kd
    _catalog: Catalog | None = field(default=None, init=False, repr=False)

    def catalog(self) -> Catalog:
        """Raw ids, titles and every user's history (train + valid + test) of the run, with its tie seed."""
        if self._catalog is None:
            data, split = self.data.data, self.data.split
            self._catalog = Catalog.from_split(data.user_ids, data.item_ids, data.items,
                                               [split.train, split.valid, split.test], int(self.cfg.seed))
        return self._catalog


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's metrics.json; ConfigError when `run_dir` is not a finished run folder."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a finished run folder (no metrics.json) nor an export folder "
                          "(no manifest.json); give the folder `recdistill train` wrote, or one written by "
                          "`recdistill export`")
    metrics = json.loads(path.read_text(encoding="utf-8"))
    if "config" not in metrics.get("run", {}):
        raise ConfigError(f"{path} has no run config (written by an older recdistill); train the run again to serve it")
    return metrics


def checkpoint_path(run_dir: Path, metrics: dict[str, Any], role: str, cache_dir: Path | None = None
                    ) -> tuple[Path, str | None]:
    """(checkpoint file, cache key or None) of `role`; ConfigError for a role the run lacks, DataError
    naming the file, the key and the way back when the checkpoint is gone."""
    present = [r for r in MODEL_ROLES if r in metrics]
    if role not in present:
        raise ConfigError(f"role {role!r} is not a trained model of {run_dir}; valid: {', '.join(present)}")
    run = metrics["run"]
    if role == "student_kd":
        path = Path(run_dir) / "checkpoints" / "student_kd.pt"
        if not path.exists():
            raise DataError(f"the student_kd checkpoint {path} is gone; train the run again into a new folder")
        return path, None
    key = run.get(CACHED_ROLES[role])
    if not key:
        raise ConfigError(f"{run_dir}/metrics.json records no run.{CACHED_ROLES[role]}; cannot find the {role}'s "
                          "checkpoint in the model cache")
    root = Path(cache_dir) if cache_dir is not None else Path(str(run["config"]["cache_dir"])).expanduser()
    path = root / f"{role}s" / f"{key}.pt"  # the layout of recdistill.run.cache.ModelCache
    if not path.exists():
        raise DataError(f"the {role} of {run_dir} is no longer in the model cache: {path} (key {key}, "
                        f"metrics.json run.{CACHED_ROLES[role]}) is gone. Train the run's config again (the same "
                        f"overrides, into a new folder) to rebuild it under the same key, or pass --cache-dir "
                        f"if the cache moved")
    return path, key


def run_config(metrics: dict[str, Any], cache_dir: Path | None = None) -> DictConfig:
    """The run's resolved config; with `cache_dir`, moved to that cache (the dataset's too where it followed)."""
    config = metrics["run"]["config"]
    if config.get("task") != "ranking":
        raise ConfigError(f"export and recommend serve top-K ranking runs; this run's task is {config.get('task')!r}")
    cfg = OmegaConf.create(config)
    if cache_dir is not None:
        if cfg.dataset.get("cache_dir") == cfg.cache_dir:
            cfg.dataset.cache_dir = str(cache_dir)
        cfg.cache_dir = str(cache_dir)
    return cfg


def open_run(run_dir: str | Path, role: str = "student_kd", cache_dir: str | Path | None = None) -> RunRole:
    """`role` of the run in `run_dir` with the run's data (see the module docstring)."""
    run_dir = Path(run_dir).expanduser().resolve()
    cache = Path(cache_dir).expanduser().resolve() if cache_dir is not None else None
    metrics = read_metrics(run_dir)
    cfg = run_config(metrics, cache)
    checkpoint, key = checkpoint_path(run_dir, metrics, role, cache)
    device = torch.device("cpu")
    task = get_task(cfg, device)
    with tempfile.TemporaryDirectory(prefix="recdistill-serving-") as scratch:
        data = task.prepare(Path(scratch))  # writes its data report and split.json there, not into run_dir
    recorded = metrics["run"].get("split_key")
    if data.split_key != recorded:
        raise DataError(f"the data of {run_dir} changed since the run: its split key is {data.split_key} now, "
                        f"{recorded} in metrics.json (were the dataset files edited?); the checkpoint's internal "
                        "ids would not match the data's")
    model, _ = load_model(checkpoint, device)
    if (model.shape.n_users, model.shape.n_items) != (data.shape.n_users, data.shape.n_items):
        raise DataError(f"{checkpoint} was built for {model.shape.n_users} users and {model.shape.n_items} items, "
                        f"the run's data has {data.shape.n_users} and {data.shape.n_items}")
    task.after_load(model, data)  # what a checkpoint does not hold (counts, graphs from the training split)
    if role == "teacher":
        task.after_teacher(model, {}, data)  # as the run served its teacher (zero-shot cold items)
    log.info("serving %s of %s from %s", role, run_dir, checkpoint)
    return RunRole(run_dir, role, metrics, cfg, data, model.eval(), checkpoint, key)
