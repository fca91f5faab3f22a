"""The training loop every model and strategy shares: same code with or without a teacher.

After each epoch the loop validates, tracks the best epoch, and atomically writes a checkpoint
holding everything needed to continue (weights, optimiser, strategy parameters, RNG state, history),
so an interrupted run resumes where it stopped and ends with the metrics it would have had.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from recdistill.data.batching import RatingWindows, TrainingSequences
from recdistill.distill.objective import DistillationObjective
from recdistill.errors import ConfigError
from recdistill.evaluation.predict import predict
from recdistill.evaluation.rating_metrics import rating_metrics
from recdistill.models.base import RatingModel
from recdistill.training.config import LoopConfig
from recdistill.utils.atomic import torch_save

log = logging.getLogger(__name__)

#: Whether a larger value of each monitorable validation metric is better.
HIGHER_IS_BETTER = {"mae": False, "rmse": False, "accuracy": True}
#: Ranking metrics, monitorable at any K as `<name>@<K>` (e.g. ndcg@10); larger is better.
RANKING_METRICS = ("hr", "ndcg", "recall", "precision", "mrr", "map")


def higher_is_better(monitor: str) -> bool:
    """Direction of a monitorable metric; ConfigError listing the valid names otherwise."""
    if monitor in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[monitor]
    name, _, k = monitor.partition("@")
    if name in RANKING_METRICS and k.isdigit():
        return True
    raise ConfigError(f"trainer monitor {monitor!r} unknown; valid: {sorted(HIGHER_IS_BETTER)} for ratings, "
                      f"or <metric>@<K> for ranking with metric in {list(RANKING_METRICS)}")


def _rating_validation(valid_data: RatingWindows, eval_batch_size: int, device: torch.device
                       ) -> Callable[[RatingModel], dict[str, float]]:
    def validate(model: RatingModel) -> dict[str, float]:
        output = predict(model, valid_data, eval_batch_size, device)
        return rating_metrics(output.logits, output.rating, valid_data.targets["rating"])
    return validate


def _batch_targets(batch: dict[str, torch.Tensor]) -> int:
    """Targets in a batch: ranking batches say so, rating batches have one label per target."""
    return int(batch["n_targets"]) if "n_targets" in batch else len(batch["label"])


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
    train_data: TrainingSequences | RatingWindows,
    valid_data: RatingWindows | Callable[[nn.Module], dict[str, float]],
    config: LoopConfig,
    device: torch.device,
    seed: int,
    checkpoint_dir: Path,
    label: str,
    eval_batch_size: int = 4096,
    param_groups: list[dict] | None = None,
) -> TrainResult:
    """Train `model` on `objective`, early-stopping on `config.monitor`; resumes from `checkpoint_dir`.

    `valid_data` is a rating split, or any function returning validation metrics for the model.
    `param_groups` (AdamW groups over the model's trainable parameters, e.g. a lower learning rate
    for transferred weights) default to one group of every trainable parameter at `config.lr`."""
    larger_is_better = higher_is_better(config.monitor)
    # Denormal floats (e.g. gradients through a Gumbel-softmax at low temperature, and their squares
    # in Adam's state) make CPU arithmetic many times slower; values that small are zero to training.
    torch.set_flush_denormal(True)
    validate = valid_data if callable(valid_data) else _rating_validation(valid_data, eval_batch_size, device)
    model.to(device)
    objective.to(device)
    objective_parameters = [p for p in objective.parameters() if p.requires_grad]
    if param_groups is None:
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    groups = [*param_groups, {"params": objective_parameters}] if objective_parameters else list(param_groups)
    parameters = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    last_path = checkpoint_dir / "last.pt"

    state = {"epoch": 0, "best_epoch": 0, "best_value": None, "best_valid": {}, "bad_epochs": 0,
             "history": [], "seconds": 0.0, "best_state": None}
    if last_path.exists():
        saved = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        objective.load_state_dict(saved["objective"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        state = saved["loop"]
        log.info("%s: resuming from %s after epoch %d", label, last_path, state["epoch"])

    finished = state["bad_epochs"] >= config.patience or state["epoch"] >= config.epochs
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(), transient=True) as progress:
        task = progress.add_task(label, total=config.epochs * len(train_data),
                                 completed=state["epoch"] * len(train_data),
                                 status="")
        while not finished:
            epoch = state["epoch"] + 1
            started = time.perf_counter()
            model.train()
            objective.on_epoch_start(epoch)
            generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
            sums: dict[str, float] = {}
            for batch in train_data.batches(config.batch_size, device, generator, epoch):
                output = model(batch)
                terms = objective(model.loss(batch, output), output, batch)
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
                optimizer.step()
                size = _batch_targets(batch)
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach()) * size
                progress.advance(task, size)
            valid = validate(model)
            if config.monitor not in valid:
                raise ConfigError(f"trainer monitor {config.monitor!r} is not among the validation metrics "
                                  f"{sorted(valid)}")
            seconds = time.perf_counter() - started
            row = {"epoch": epoch, **{f"train_{k}": v / len(train_data) for k, v in sums.items()},
                   **{f"valid_{k}": v for k, v in valid.items()}, "seconds": seconds}
            state["history"].append(row)
            state["seconds"] += seconds
            state["epoch"] = epoch
            value = valid[config.monitor]
            if _improved(value, state["best_value"], larger_is_better):
                state.update(best_value=value, best_epoch=epoch, best_valid=valid, bad_epochs=0,
                             best_state=copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()}))
            else:
                state["bad_epochs"] += 1
            log.info("%s epoch %d: loss %.4f, valid %s %.4f (best %.4f at %d), %.1fs", label, epoch,
                     row["train_loss"], config.monitor, value, state["best_value"], state["best_epoch"], seconds)
            progress.update(task, status=f"valid {config.monitor} {value:.4f}")
            finished = state["bad_epochs"] >= config.patience or epoch >= config.epochs
            torch_save(last_path, {"model": model.state_dict(), "objective": objective.state_dict(),
                                   "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                                   "loop": state})
    return TrainResult(best_state=state["best_state"], best_epoch=state["best_epoch"],
                       best_valid=state["best_valid"], history=pd.DataFrame(state["history"]),
                       seconds=state["seconds"])
