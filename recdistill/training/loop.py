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

import pandas as pd
import torch
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
    model: RatingModel,
    objective: DistillationObjective,
    train_data: TrainingSequences | RatingWindows,
    valid_data: RatingWindows,
    config: LoopConfig,
    device: torch.device,
    seed: int,
    checkpoint_dir: Path,
    label: str,
    eval_batch_size: int = 4096,
) -> TrainResult:
    """Train `model` on `objective`, early-stopping on `config.monitor`; resumes from `checkpoint_dir`."""
    if config.monitor not in HIGHER_IS_BETTER:
        raise ConfigError(f"trainer monitor {config.monitor!r} unknown; valid: {sorted(HIGHER_IS_BETTER)}")
    higher_is_better = HIGHER_IS_BETTER[config.monitor]
    model.to(device)
    objective.to(device)
    parameters = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
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
                size = len(batch["label"])
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach()) * size
                progress.advance(task, size)
            valid_output = predict(model, valid_data, eval_batch_size, device)
            valid = rating_metrics(valid_output.logits, valid_output.rating, valid_data.targets["rating"])
            seconds = time.perf_counter() - started
            row = {"epoch": epoch, **{f"train_{k}": v / len(train_data) for k, v in sums.items()},
                   **{f"valid_{k}": v for k, v in valid.items()}, "seconds": seconds}
            state["history"].append(row)
            state["seconds"] += seconds
            state["epoch"] = epoch
            value = valid[config.monitor]
            if _improved(value, state["best_value"], higher_is_better):
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
