"""Stage 1 with transfer (rating task): the teacher learns on the *source* data of the split
(`split.extra["source"]`: warm users, or the source domain) and is then carried to the target.

- `shared_weights`: a source model of the teacher's architecture is trained on the source data
  (early stopping on a per-user chronological 10% of it); its configured modules are copied into
  a fresh teacher, some frozen, the rest fine-tuned on the target's training data at
  `lr_scale` x the learning rate, with early stopping on the target's validation split.
- `meta`: the teacher (a model that adapts per user, `meta_rating`) is meta-trained on the source
  users as tasks and selected on the target's validation split; at prediction time it adapts to
  each user from the interactions it may read (for new users: their support set). No fine-tuning.

The transferred teacher then serves the rest of the pipeline unchanged: knowledge extraction,
distillation into the student, evaluation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from recdistill.data.batching import build_split_data, build_user_rows
from recdistill.data.config import SplitConfig
from recdistill.data.splits import make_split
from recdistill.distill.objective import build_objective
from recdistill.errors import ConfigError
from recdistill.models.base import RatingModel
from recdistill.training.loop import train
from recdistill.transfer.config import check_transfer_config
from recdistill.transfer.shared_weights import apply_shared_weights, parameter_groups

log = logging.getLogger(__name__)

RATING_MODES = ("none", "shared_weights", "meta")


def source_table(split: Any) -> pd.DataFrame:
    """The split's source interactions; ConfigError when the split has none."""
    if "source" not in split.extra:
        raise ConfigError("transfer needs a split with source data (split=cold_user, domain_genre or domain_time); "
                          f"this split has extra tables {sorted(split.extra)}")
    return split.extra["source"]


def source_inputs(cfg: DictConfig, split: Any) -> tuple[Any, Any]:
    """(training sequences, validation rows) of the source data: per user, the last 10% validates."""
    source = make_split(source_table(split), SplitConfig(name="chrono_ratio", ratios=[0.9, 0.1, 0.0]), cfg.seed)
    frames = {"train": source.train, "valid": source.valid, "test": source.test}
    train_data, windows = build_split_data(frames, cfg.evaluator.history_length)
    return train_data, build_user_rows(windows["valid"]) or windows["valid"]


def _loop(cfg: DictConfig, epochs: int | None = None) -> DictConfig:
    loop = OmegaConf.create(OmegaConf.to_container(cfg.trainer.teacher))
    if epochs:
        loop.epochs = epochs
    return loop


def transferred_teacher(cfg: DictConfig, run: Any, run_dir: Path, device: torch.device, key: str,
                        new_model: Any) -> tuple[RatingModel, dict]:
    """Train the teacher by `cfg.transfer.mode` (shared_weights | meta); returns (model, info)."""
    check_transfer_config(cfg.transfer)
    mode = cfg.transfer.mode
    if mode not in RATING_MODES[1:]:
        raise ConfigError(f"transfer.mode={mode!r} does not apply to the rating task; valid: {list(RATING_MODES)}")
    no_distillation = build_objective(OmegaConf.create({"name": "none", "base_weight": 1.0, "terms": {}}))
    source_train, source_valid = source_inputs(cfg, run.split)
    seed = cfg.teacher_seed
    checkpoints = run_dir / "checkpoints"
    if mode == "meta":
        teacher = new_model(cfg.teacher, run, cfg, seed)
        if not getattr(teacher, "adapts_per_user", False):
            raise ConfigError(f"transfer=meta needs a teacher that adapts per user (teacher=meta_rating); "
                              f"got {cfg.teacher.name!r}")
        log.info("transfer meta: meta-training %s on %d source targets", cfg.teacher.name, len(source_train))
        result = train(teacher, no_distillation, source_train, run.evaluation["valid"],
                       _loop(cfg, cfg.transfer.source_epochs), device, seed, checkpoints / f"teacher_meta_{key}",
                       "teacher (meta)", cfg.trainer.eval_batch_size)
        teacher.load_state_dict(result.best_state)
        return teacher, {"training": result.summary(), "transfer": {"mode": "meta",
                                                                    "source_targets": len(source_train)}}

    source = new_model(cfg.teacher, run, cfg, seed)
    log.info("transfer shared_weights: training the source model on %d source targets", len(source_train))
    source_result = train(source, no_distillation, source_train, source_valid, _loop(cfg, cfg.transfer.source_epochs),
                          device, seed, checkpoints / f"teacher_source_{key}", "source", cfg.trainer.eval_batch_size)
    source.load_state_dict(source_result.best_state)
    teacher = new_model(cfg.teacher, run, cfg, seed + 1)  # a fresh target: only the copied modules carry over
    summary = apply_shared_weights(source, teacher, cfg.transfer, cfg.trainer.teacher.lr)
    groups = parameter_groups(teacher, cfg.trainer.teacher.lr, summary["copied"], cfg.transfer.lr_scale)
    log.info("transfer shared_weights: fine-tuning on %d target targets", len(run.train))
    result = train(teacher, no_distillation, run.train, run.evaluation["valid"], _loop(cfg), device, seed,
                   checkpoints / f"teacher_target_{key}", "teacher (fine-tune)", cfg.trainer.eval_batch_size,
                   param_groups=[{"params": g["params"], "lr": g["lr"]} for g in groups])
    teacher.load_state_dict(result.best_state)
    summary.pop("copied")  # tensor names: long; the counts and groups say enough in metrics.json
    summary.pop("frozen")
    return teacher, {"training": result.summary(),
                     "transfer": {"mode": "shared_weights", **summary,
                                  "source_training": {k: v for k, v in source_result.summary().items()
                                                      if k != "history"}}}
