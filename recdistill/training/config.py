"""Schemas of the `trainer` config group."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LoopConfig:
    """One training loop: budget, optimiser and early stopping."""

    epochs: int = 20  # upper bound on passes over the training split
    batch_size: int = 256
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    patience: int = 3  # epochs without validation improvement before stopping
    monitor: str = "mae"  # validation metric that selects the best epoch: mae | rmse | accuracy | ndcg@10 ...
    # ranking sequence models: rows start every `sequence_stride` items, so each target reads at least
    # history_length - stride earlier items (0 = history_length: rows do not overlap)
    sequence_stride: int = 0


@dataclass
class TrainerConfig:
    """The teacher's loop and the student's loop (shared by the student alone and distilled)."""

    teacher: LoopConfig = field(default_factory=LoopConfig)
    student: LoopConfig = field(default_factory=LoopConfig)
    eval_batch_size: int = 4096  # rows per forward pass during evaluation and extraction
