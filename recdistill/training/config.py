"""Schemas of the `trainer` config group."""

from __future__ import annotations

from dataclasses import dataclass, field

from recdistill.utils.config_checks import bounded


@dataclass
class LoopConfig:
    """One training loop: budget, optimiser and early stopping."""

    epochs: int = bounded(20, ge=1)  # upper bound on passes over the training split
    batch_size: int = bounded(256, ge=1)  # training rows per optimiser step
    lr: float = bounded(1e-3, gt=0)  # the optimiser's learning rate
    # adamw: decoupled weight decay (Loshchilov & Hutter 2019); adam: L2 coupled into the gradient
    # (weight_decay * theta added to it, as torch.optim.Adam does), far weaker on a loss summed over rows
    optimizer: str = bounded("adamw", choices=("adamw", "adam"))
    weight_decay: float = bounded(0.0, ge=0)  # the optimiser's weight decay (see `optimizer`)
    # constant: `lr` throughout; cosine: from `lr` down to 0 over the `epochs` budget, step by step
    # (Loshchilov & Hutter 2017, SGDR, without restarts), so the budget also sets the schedule
    lr_schedule: str = bounded("constant", choices=("constant", "cosine"))
    # mean: each loss averaged over the batch's targets; sum: the whole objective times the batch's
    # targets (losses summed over rows, as in Rendle et al.'s BPR and many papers' code)
    loss_reduction: str = bounded("mean", choices=("mean", "sum"))
    grad_clip: float = bounded(1.0, ge=0, note="0 = off")  # max gradient norm; 0 = off
    patience: int = bounded(3, ge=1)  # epochs without validation improvement before stopping (select=best)
    monitor: str = "mae"  # validation metric that selects the best epoch: mae | rmse | accuracy | ndcg@10 ...
    # best: keep the epoch best on validation `monitor`, stop after `patience` epochs without a better
    # one; last: train all `epochs` and keep the last (no model selection; validation is only logged)
    select: str = bounded("best", choices=("best", "last"))
    # validate after every N-th epoch and after the last (RecBole's eval_step); with select=best,
    # patience then counts validations, not epochs
    validate_every: int = bounded(1, ge=1)
    # ranking sequence models: rows start every `sequence_stride` items, so each target reads at least
    # history_length - stride earlier items (0 = history_length: rows do not overlap)
    sequence_stride: int = bounded(0, ge=0, note="0 = history_length")


@dataclass
class TrainerConfig:
    """The teacher's loop and the student's loop (shared by the student alone and distilled)."""

    teacher: LoopConfig = field(default_factory=LoopConfig)
    student: LoopConfig = field(default_factory=LoopConfig)
    eval_batch_size: int = bounded(1024, ge=1)  # targets per forward pass during evaluation and extraction
    # after selection on validation, train every model again from its initial weights on train + valid
    # for its selected number of epochs; test metrics come from these refits (recdistill.run.refit)
    refit_on_valid: bool = False
