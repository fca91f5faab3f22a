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


def source_model_key(cfg: DictConfig, split_key: str) -> str:
    """Hash of everything that determines the source model: the data and the split *minus* the
    target-only settings (support size, target fraction), the teacher, its budget and the mode."""
    from recdistill import runinfo
    from recdistill.pipeline import MODEL_CACHE_FORMAT

    split = OmegaConf.to_container(cfg.split, resolve=True)
    for target_only in ("support_size", "target_fraction"):
        split.pop(target_only, None)
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    for where in ("cache_dir", "source"):
        dataset.pop(where, None)
    return runinfo.stable_hash({
        "role": "source", "dataset": dataset, "split": split, "split_seed": cfg.seed,
        "model": OmegaConf.to_container(cfg.teacher, resolve=True), "trainer": OmegaConf.to_container(cfg.trainer.teacher),
        "seed": cfg.teacher_seed, "mode": cfg.transfer.mode, "source_epochs": cfg.transfer.source_epochs,
        "history_length": cfg.evaluator.history_length, "format": MODEL_CACHE_FORMAT})


def source_model(cfg: DictConfig, run: Any, run_dir: Path, device: torch.device, new_model: Any
                 ) -> tuple[RatingModel, dict]:
    """The model trained (meta-trained for `meta`) on the split's source data and selected on a
    held-out 10% of it; cached, so every target setting (each k, each fraction) shares it."""
    from recdistill.pipeline import cached_model

    key = source_model_key(cfg, run.split_key)
    no_distillation = build_objective(OmegaConf.create({"name": "none", "base_weight": 1.0, "terms": {}}))

    def fit() -> tuple[RatingModel, dict]:
        source_train, source_valid = source_inputs(cfg, run.split)
        model = new_model(cfg.teacher, run, cfg, cfg.teacher_seed)
        if cfg.transfer.mode == "meta" and not getattr(model, "adapts_per_user", False):
            raise ConfigError(f"transfer=meta needs a teacher that adapts per user (teacher=meta_rating); "
                              f"got {cfg.teacher.name!r}")
        log.info("transfer %s: training the source model on %d source targets", cfg.transfer.mode, len(source_train))
        result = train(model, no_distillation, source_train, source_valid, _loop(cfg, cfg.transfer.source_epochs),
                       device, cfg.teacher_seed, run_dir / "checkpoints" / f"source_{key}", "source",
                       cfg.trainer.eval_batch_size)
        model.load_state_dict(result.best_state)
        return model, {"training": result.summary(), "source_targets": len(source_train)}

    return cached_model(cfg, "source", key, fit, device)


def transferred_teacher(cfg: DictConfig, run: Any, run_dir: Path, device: torch.device, key: str,
                        new_model: Any) -> tuple[RatingModel, dict]:
    """Train the teacher by `cfg.transfer.mode` (shared_weights | meta); returns (model, info)."""
    check_transfer_config(cfg.transfer)
    mode = cfg.transfer.mode
    if mode not in RATING_MODES[1:]:
        raise ConfigError(f"transfer.mode={mode!r} does not apply to the rating task; valid: {list(RATING_MODES)}")
    source_table(run.split)  # a clear error before any training when the split has no source
    source, source_info = source_model(cfg, run, run_dir, device, new_model)
    source_summary = {k: v for k, v in source_info.get("training", {}).items() if k != "history"}
    source_summary.update(key=source_info["key"], from_cache=source_info["from_cache"])
    if mode == "meta":  # the meta-learned model adapts per user at prediction time: no fine-tuning
        return source, {"training": source_info["training"],
                        "transfer": {"mode": "meta", "source_training": source_summary}}

    no_distillation = build_objective(OmegaConf.create({"name": "none", "base_weight": 1.0, "terms": {}}))
    teacher = new_model(cfg.teacher, run, cfg, cfg.teacher_seed + 1)  # fresh: only the copied modules carry over
    summary = apply_shared_weights(source, teacher, cfg.transfer, cfg.trainer.teacher.lr)
    groups = parameter_groups(teacher, cfg.trainer.teacher.lr, summary["copied"], cfg.transfer.lr_scale)
    log.info("transfer shared_weights: fine-tuning on %d target targets", len(run.train))
    result = train(teacher, no_distillation, run.train, run.evaluation["valid"], _loop(cfg), device,
                   cfg.teacher_seed, run_dir / "checkpoints" / f"teacher_target_{key}", "teacher (fine-tune)",
                   cfg.trainer.eval_batch_size, param_groups=[{"params": g["params"], "lr": g["lr"]} for g in groups])
    teacher.load_state_dict(result.best_state)
    summary.pop("copied")  # tensor names: long; the counts and groups say enough in metrics.json
    summary.pop("frozen")
    return teacher, {"training": result.summary(),
                     "transfer": {"mode": "shared_weights", **summary, "source_training": source_summary}}
