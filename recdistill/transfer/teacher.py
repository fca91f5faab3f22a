"""Stage 1 with transfer (rating task): the teacher learns on the *source* data of the split
(`split.extra["source"]`: warm users, or the source domain) and is then carried to the target.

- `shared_weights`: a source model of the teacher's architecture is trained on the source data
  (early stopping on a per-user chronological 10% of it); its configured modules are copied into
  a fresh teacher, some frozen, the rest fine-tuned on the target's training data at
  `lr_scale` x the learning rate, with early stopping on the target's validation split.
- `meta`: the teacher (a model that adapts per user, `meta_rating`) is meta-trained on the source
  users as tasks and selected on the target's validation split; at prediction time it adapts to
  each user from the interactions it may read (for new users: their support set). No fine-tuning.

The transferred teacher then serves the rest of the run unchanged: knowledge extraction,
distillation into the student, evaluation. The source model is cached under a key without the
target-only settings, so every target setting (each support size, each fraction) shares it.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from recdistill.data.batching import FIVE_STARS, build_split_data, build_user_rows
from recdistill.data.rating_scale import RatingScale
from recdistill.data.split_config import ChronoRatioSplit
from recdistill.data.splits import make_split
from recdistill.distill.objective import build_objective
from recdistill.errors import ConfigError
from recdistill.evaluation.rating_eval import rating_validator
from recdistill.models.base import RatingModel
from recdistill.training.loop import train
from recdistill.transfer.config import check_transfer_config
from recdistill.transfer.protocols import TransferContext
from recdistill.transfer.shared_weights import apply_shared_weights, parameter_groups

log = logging.getLogger(__name__)

#: Split settings that change only the target part, never the source data.
TARGET_ONLY_SPLIT_KEYS = ("support_size", "target_fraction")
NO_DISTILLATION = OmegaConf.create({"name": "none", "base_weight": 1.0, "terms": {}})


def source_table(split: Any) -> pd.DataFrame:
    """The split's source interactions; ConfigError when the split has none."""
    if "source" not in split.extra:
        raise ConfigError("transfer needs a split with source data (split=cold_user, domain_genre or domain_time); "
                          f"this split has extra tables {sorted(split.extra)}")
    return split.extra["source"]


def source_inputs(cfg: DictConfig, split: Any, scale: RatingScale | None = None) -> tuple[Any, Any]:
    """(training sequences, validation rows) of the source data: per user, the last 10% validates;
    rating classes follow `scale` (the target data's; None: 1..5)."""
    source = make_split(source_table(split), ChronoRatioSplit(ratios=[0.9, 0.1, 0.0]), cfg.seed)
    frames = {"train": source.train, "valid": source.valid, "test": source.test}
    train_data, windows = build_split_data(frames, cfg.evaluator.history_length, scale=scale or FIVE_STARS)
    return train_data, build_user_rows(windows["valid"]) or windows["valid"]


def _loop(cfg: DictConfig, epochs: int | None = None) -> DictConfig:
    loop = OmegaConf.create(OmegaConf.to_container(cfg.trainer.teacher))
    if epochs:
        loop.epochs = epochs
    return loop


def source_model(ctx: TransferContext) -> tuple[RatingModel, dict]:
    """The model trained (meta-trained for `meta`) on the split's source data and selected on a
    held-out 10% of it; cached under a key without the target-only split settings."""
    cfg = ctx.cfg
    split = {k: v for k, v in OmegaConf.to_container(cfg.split, resolve=True).items()
             if k not in TARGET_ONLY_SPLIT_KEYS}
    transfer = {"mode": cfg.transfer.mode, "source_epochs": cfg.transfer.source_epochs}

    def fit(key: str) -> tuple[RatingModel, dict]:
        source_train, source_valid = source_inputs(cfg, ctx.data.split, ctx.data.data.rating_scale)
        model = ctx.new_model(cfg.teacher, cfg.teacher_seed)
        if cfg.transfer.mode == "meta" and not model.adapts_per_user:
            raise ConfigError(f"transfer=meta needs a teacher that adapts per user (teacher=meta_rating); "
                              f"got {cfg.teacher.name!r}")
        log.info("transfer %s: training the source model on %d source targets", cfg.transfer.mode, len(source_train))
        validate = rating_validator(source_valid, cfg.trainer.eval_batch_size, ctx.device)
        result = train(model, build_objective(NO_DISTILLATION), source_train, validate,
                       _loop(cfg, cfg.transfer.source_epochs), ctx.device, cfg.teacher_seed,
                       ctx.run_dir / "checkpoints" / f"source_{key}", "source")
        model.load_state_dict(result.best_state)
        return model, {"training": result.summary(), "source_targets": len(source_train)}

    return ctx.cache.get_or_fit("source", fit, split=split, split_key=None, split_seed=cfg.seed, transfer=transfer)


def transferred_teacher(ctx: TransferContext, key: str) -> tuple[RatingModel, dict]:
    """Train the teacher (cache entry `key`) by `transfer.mode` (shared_weights | meta); returns (model, info)."""
    cfg = ctx.cfg
    check_transfer_config(cfg.transfer)
    source_table(ctx.data.split)  # a clear error before any training when the split has no source
    source, source_info = source_model(ctx)
    source_summary = {k: v for k, v in source_info.get("training", {}).items() if k != "history"}
    source_summary.update(key=source_info["key"], from_cache=source_info["from_cache"])
    if cfg.transfer.mode == "meta":  # the meta-learned model adapts per user at prediction time: no fine-tuning
        return source, {"training": source_info["training"],
                        "transfer": {"mode": "meta", "source_training": source_summary}}

    teacher = ctx.new_model(cfg.teacher, cfg.teacher_seed + 1)  # fresh: only the copied modules carry over
    summary = apply_shared_weights(source, teacher, cfg.transfer, cfg.trainer.teacher.lr)
    groups = parameter_groups(teacher, cfg.trainer.teacher.lr, summary["copied"], cfg.transfer.lr_scale)
    log.info("transfer shared_weights: fine-tuning on %d target targets", len(ctx.data.train))
    validate = rating_validator(ctx.data.evaluation["valid"], cfg.trainer.eval_batch_size, ctx.device)
    result = train(teacher, build_objective(NO_DISTILLATION), ctx.data.train, validate, _loop(cfg), ctx.device,
                   cfg.teacher_seed, ctx.run_dir / "checkpoints" / f"teacher_target_{key}", "teacher (fine-tune)",
                   param_groups=[{"params": g["params"], "lr": g["lr"]} for g in groups])
    teacher.load_state_dict(result.best_state)
    summary.pop("copied")  # tensor names: long; the counts and groups say enough in metrics.json
    summary.pop("frozen")
    return teacher, {"training": result.summary(),
                     "transfer": {"mode": "shared_weights", **summary, "source_training": source_summary}}
