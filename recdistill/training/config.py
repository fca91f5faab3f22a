"""Schemas of the `trainer` config group."""

from __future__ import annotations

from dataclasses import dataclass, field

from recdistill.utils.config_checks import bounded


@dataclass
class LoopConfig:
    """One training loop: budget, optimiser and early stopping."""

    epochs: int = bounded(20, ge=1)  # upper bound on passes over the training split
    batch_size: int = bounded(256, ge=1)  # training rows per optimiser step
    lr: float = bounded(1e-3, gt=0)  # AdamW learning rate
    weight_decay: float = bounded(0.0, ge=0)  # AdamW decoupled weight decay
    grad_clip: float = bounded(1.0, ge=0, note="0 = off")  # max gradient norm; 0 = off
    patience: int = bounded(3, ge=1)  # epochs without validation improvement before stopping
    monitor: str = "mae"  # validation metric that selects the best epoch: mae | rmse | accuracy | ndcg@10 ...
    # ranking sequence models: rows start every `sequence_stride` items, so each target reads at least
    # history_length - stride earlier items (0 = history_length: rows do not overlap)
    sequence_stride: int = bounded(0, ge=0, note="0 = history_length")


@dataclass
class TrainerConfig:
    """The teacher's loop and the student's loop (shared by the student alone and distilled)."""

    teacher: LoopConfig = field(default_factory=LoopConfig)
    student: LoopConfig = field(default_factory=LoopConfig)
    eval_batch_size: int = bounded(4096, ge=1)  # rows per forward pass during evaluation and extraction
