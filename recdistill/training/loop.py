"""The training loop every model and strategy shares: same code with or without a teacher.

After each epoch the loop validates, tracks the best epoch, and atomically writes a checkpoint
holding everything needed to continue (weights, optimiser, strategy parameters, RNG state, history),
so an interrupted run resumes where it stopped and ends with the metrics it would have had.
Each finished epoch's history row also goes to an `EpochObserver`, if one is given or installed with
`observing_epochs` (experiment tracking, which the loop knows only through that protocol).
Under torchrun (`recdistill.training.distributed`) every rank trains on its slice of each global batch
through DistributedDataParallel; rank 0 alone validates (its metrics are broadcast, so early stopping
decides the same everywhere), saves checkpoints and tells the observer.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import pandas as pd
import torch
from torch import nn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from recdistill.distill.objective import DistillationObjective
from recdistill.errors import ConfigError
from recdistill.evaluation.metrics import higher_is_better
from recdistill.training import distributed
from recdistill.training.config import LoopConfig
from recdistill.utils.atomic import torch_save
from recdistill.utils.safe_load import load_plain

log = logging.getLogger(__name__)


class TrainingBatches(Protocol):
    """What the loop trains on: the batches of one epoch, and how many targets an epoch holds."""

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, device: torch.device, generator: torch.Generator, epoch: int
                ) -> Iterator[dict[str, torch.Tensor]]: ...


class EpochObserver(Protocol):
    """Told after each epoch: the loop's label (its role) and the epoch's history row (`epoch`,
    `train_<term>` per loss term, `valid_<metric>` when it validated, `seconds`)."""

    def __call__(self, label: str, row: dict[str, float]) -> None: ...


_OBSERVER: ContextVar[EpochObserver | None] = ContextVar("epoch_observer", default=None)


@contextmanager
def observing_epochs(observer: EpochObserver) -> Iterator[None]:
    """Within the block, every `train` call without its own `on_epoch` reports its epochs to `observer`
    (the callers of `train`, tasks and transfer, need not pass it along)."""
    token = _OBSERVER.set(observer)
    try:
        yield
    finally:
        _OBSERVER.reset(token)


def _batch_targets(batch: dict[str, torch.Tensor]) -> int:
    """Targets in a batch: batches whose rows hold several targets say so (`n_targets`); otherwise
    one target per entry of `user`."""
    return int(batch["n_targets"]) if "n_targets" in batch else len(batch["user"])


@dataclass
class TrainResult:
    """The best weights, their epoch and validation metrics, and the per-epoch history."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_valid: dict[str, float]
    history: pd.DataFrame
    seconds: float

    def summary(self) -> dict:
        """Best epoch, validation metrics, epochs run and seconds, for checkpoints and reports."""
        return {"best_epoch": self.best_epoch, "best_valid": self.best_valid, "epochs": len(self.history),
                "seconds": self.seconds, "history": self.history.to_dict(orient="records")}


def _improved(value: float, best: float | None, higher_is_better: bool) -> bool:
    if best is None:
        return True
    return value > best if higher_is_better else value < best


def train(
    model: nn.Module,
    objective: DistillationObjective,
    train_data: TrainingBatches,
    validate: Callable[[nn.Module], dict[str, float]] | None,
    config: LoopConfig,
    device: torch.device,
    seed: int,
    checkpoint_dir: Path,
    label: str,
    param_groups: list[dict] | None = None,
    on_epoch: EpochObserver | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train `model` on `objective`; resumes from `checkpoint_dir`. With `config.select == "best"`
    the result holds the epoch best on `config.monitor` (stopping after `config.patience` epochs
    without a better one); with "last", all `config.epochs` are trained and the last is kept.

    `train_data` yields the task's training batches; `validate(model)` returns the validation
    metrics (the task's validator), among them `config.monitor`; with `validate=None` nothing is
    validated and the last epoch is kept (a refit on train + valid, `recdistill.run.refit`).
    `stop_after` ends training after that many epochs while the learning-rate schedule still spans
    `config.epochs` (a refit repeats the selected run's first epochs exactly as they were scheduled).
    `param_groups` (optimiser groups over the model's trainable parameters, e.g. a lower learning rate
    for transferred weights) default to one group of every trainable parameter at `config.lr`.
    `on_epoch(label, row)` is told each finished epoch (default: the observer of `observing_epochs`)."""
    larger_is_better = higher_is_better(config.monitor, source="trainer.monitor")
    # Denormal floats (e.g. gradients through a Gumbel-softmax at low temperature, and their squares
    # in Adam's state) make CPU arithmetic many times slower; values that small are zero to training.
    torch.set_flush_denormal(True)
    model.to(device)
    objective.to(device)
    optimizer, parameters = _optimizer(model, objective, param_groups, config)
    last_path = checkpoint_dir / "last.pt"
    observer = on_epoch or _OBSERVER.get()
    state = _resume(last_path, model, objective, optimizer, label)
    step = distributed.data_parallel(model, objective, device) if distributed.active() else None

    last_epoch = min(stop_after or config.epochs, config.epochs)
    keep_last = config.select == "last" or validate is None
    finished = state["bad_epochs"] >= config.patience or state["epoch"] >= last_epoch
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(), transient=True,
                  disable=not distributed.is_main()) as progress:
        task = progress.add_task(label, total=last_epoch * len(train_data),
                                 completed=state["epoch"] * len(train_data),
                                 status="")
        while not finished:
            epoch = state["epoch"] + 1
            started = time.perf_counter()
            sums = _train_epoch(model, objective, optimizer, parameters, train_data, config, device,
                                torch.Generator().manual_seed(seed * 100_003 + epoch), epoch,
                                lambda size: progress.advance(task, size), step, seed)
            validated = validate is not None and (epoch % config.validate_every == 0 or epoch == last_epoch)
            # validated once, on rank 0; every rank then takes the same early-stopping decisions
            valid = distributed.share(validate(model) if validated and distributed.is_main() else {})
            if validated and config.monitor not in valid:
                raise ConfigError(f"trainer monitor {config.monitor!r} is not among the validation metrics "
                                  f"{sorted(valid)}")
            row = {"epoch": epoch, **{f"train_{k}": v / len(train_data) for k, v in sums.items()},
                   **{f"valid_{k}": v for k, v in valid.items()}, "seconds": time.perf_counter() - started}
            _record_epoch(state, row, valid, model, config.monitor, larger_is_better,
                          keep_last=keep_last)
            if validated:
                log.info("%s epoch %d: loss %.4f, valid %s %.4f (best %.4f at %d), %.1fs", label, epoch,
                         row["train_loss"], config.monitor, valid[config.monitor], state["best_value"],
                         state["best_epoch"], row["seconds"])
                progress.update(task, status=f"valid {config.monitor} {valid[config.monitor]:.4f}")
            else:
                log.info("%s epoch %d: loss %.4f, %.1fs", label, epoch, row["train_loss"], row["seconds"])
            finished = state["bad_epochs"] >= config.patience or epoch >= last_epoch
            if not distributed.is_main():
                continue
            torch_save(last_path, {"model": model.state_dict(), "objective": objective.state_dict(),
                                   "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                                   "loop": state})
            if observer is not None:
                observer(label, row)
    return TrainResult(best_state=state["best_state"], best_epoch=state["best_epoch"],
                       best_valid=state["best_valid"], history=pd.DataFrame(state["history"]),
                       seconds=state["seconds"])


def _train_epoch(model: nn.Module, objective: DistillationObjective, optimizer: torch.optim.Optimizer,
                 parameters: list[nn.Parameter], train_data: TrainingBatches, config: LoopConfig,
                 device: torch.device, generator: torch.Generator, epoch: int,
                 advance: Callable[[int], None], step: nn.Module | None = None, seed: int = 0) -> dict[str, float]:
    """One pass over the training batches; returns each loss term summed over targets.

    With `step` (`distributed.data_parallel`), this rank trains on its slice of each global batch."""
    model.train()
    if step is not None:  # epoch hooks see rank 0's RNG; then each rank draws its own dropout masks
        torch.set_rng_state(distributed.share(torch.get_rng_state()))
    objective.on_epoch_start(epoch)
    if step is not None:
        torch.manual_seed(distributed.rank_seed(seed, epoch))
    sums: dict[str, float] = {}
    done = (epoch - 1) * len(train_data)  # targets trained on before this epoch
    for batch in train_data.batches(config.batch_size, device, generator, epoch):
        _schedule_lr(optimizer, config, done / (config.epochs * max(len(train_data), 1)))
        done += _batch_targets(batch)
        if step is not None:
            _parallel_step(step, batch, optimizer, parameters, config, sums)
            advance(_batch_targets(batch))
            continue
        output = model(batch)
        terms = objective(model.loss(batch, output), output, batch)
        size = _batch_targets(batch)
        optimizer.zero_grad(set_to_none=True)
        (terms["loss"] * size if config.loss_reduction == "sum" else terms["loss"]).backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach()) * size
        advance(size)
    return sums if step is None else distributed.sum_across(sums)


def _schedule_lr(optimizer: torch.optim.Optimizer, config: LoopConfig, progress: float) -> None:
    """Set every group's learning rate for the next step, `progress` in [0, 1) being the share of
    the `epochs` budget's targets already trained on: its base rate (`lr`, or the group's own), times
    0.5 (1 + cos(pi progress)) with `lr_schedule=cosine`."""
    factor = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) if config.lr_schedule == "cosine" else 1.0
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("base_lr", group["lr"]) * factor


def _parallel_step(step: nn.Module, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                   parameters: list[nn.Parameter], config: LoopConfig, sums: dict[str, float]) -> None:
    """One optimiser step of this rank on its slice of the global `batch`. Its loss (a mean over the
    slice's targets) is weighted by the slice's share of the batch's targets, times the world size that
    DDP's averaging divides by: the gradients sum to those of the global batch's mean (or sum, with
    loss_reduction=sum). A slice without targets runs the whole batch at weight 0 (DDP needs every rank)."""
    size = _batch_targets(batch)
    part, share = distributed.slice_batch(batch)
    terms = step(part if share else batch)
    weight = distributed.world_size() * share / size
    optimizer.zero_grad(set_to_none=True)
    (terms["loss"] * (size if config.loss_reduction == "sum" else 1) * weight).backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
    optimizer.step()
    for name, value in terms.items():
        sums[name] = sums.get(name, 0.0) + float(value.detach()) * share


def _record_epoch(state: dict, row: dict, valid: dict[str, float], model: nn.Module, monitor: str,
                  larger_is_better: bool, keep_last: bool = False) -> None:
    """Append the epoch's history row and keep the best weights so far (by `monitor`; `valid` is
    empty for an epoch without validation), or the latest weights when `keep_last`."""
    state["history"].append(row)
    state["seconds"] += row["seconds"]
    state["epoch"] = row["epoch"]
    if keep_last or (valid and _improved(valid[monitor], state["best_value"], larger_is_better)):
        state.update(best_epoch=row["epoch"], bad_epochs=0,
                     best_state=copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()}))
        if valid:
            state.update(best_value=valid[monitor], best_valid=valid)
    elif valid:
        state["bad_epochs"] += 1


def _optimizer(model: nn.Module, objective: DistillationObjective, param_groups: list[dict] | None,
               config: LoopConfig) -> tuple[torch.optim.Optimizer, list[nn.Parameter]]:
    """`config.optimizer` (AdamW, or Adam with coupled L2) over the model's groups (default: every
    trainable parameter) and the objective's learnable parts; also the flat parameter list that
    gradient clipping reads."""
    objective_parameters = [p for p in objective.parameters() if p.requires_grad]
    if param_groups is None:
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    groups = [*param_groups, {"params": objective_parameters}] if objective_parameters else list(param_groups)
    parameters = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer(groups, lr=config.lr, weight_decay=config.weight_decay), parameters


def _resume(last_path: Path, model: nn.Module, objective: DistillationObjective, optimizer: torch.optim.Optimizer,
            label: str) -> dict:
    """The loop state saved at `last_path` (weights, optimiser and RNG restored), or a fresh one."""
    if not last_path.exists():
        return {"epoch": 0, "best_epoch": 0, "best_value": None, "best_valid": {}, "bad_epochs": 0,
                "history": [], "seconds": 0.0, "best_state": None}
    saved = load_plain(last_path, "training state")
    model.load_state_dict(saved["model"])
    objective.load_state_dict(saved["objective"])
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["rng"])
    log.info("%s: resuming from %s after epoch %d", label, last_path, saved["loop"]["epoch"])
    return saved["loop"]
