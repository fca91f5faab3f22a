"""Evaluation of rating models: validation during training, and each role's valid/test metrics.

Protocol: every target of a split is predicted from the interactions it may read (valid reads
train, test reads train + valid); Accuracy compares the argmax class with the true rating's class
on the data's rating scale, MAE and
RMSE use the model's point estimate (see `recdistill.evaluation.rating_metrics`).
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

from recdistill.data.batching import RatingWindows, UserRows
from recdistill.evaluation.efficiency import efficiency_report
from recdistill.evaluation.predict import predict
from recdistill.evaluation.rating_metrics import per_user_rating_metrics, rating_metrics
from recdistill.evaluation.result import RoleResult
from recdistill.models.base import RatingModel

log = logging.getLogger(__name__)


def _class_values(model: RatingModel) -> torch.Tensor | None:
    """(C,) the rating of each of the model's classes (its `class_values` buffer), None if it has none."""
    values = getattr(model, "class_values", None)
    return values if isinstance(values, torch.Tensor) else None


def rating_validator(inputs: RatingWindows | UserRows, batch_size: int, device: torch.device
                     ) -> Callable[[RatingModel], dict[str, float]]:
    """The per-epoch validation function: rating metrics of the model on the targets of `inputs`
    (a split's windows, or the same targets batched per user)."""
    def validate(model: RatingModel) -> dict[str, float]:
        output = predict(model, inputs, batch_size, device)
        return rating_metrics(output.logits, output.rating, inputs.targets["rating"], _class_values(model))
    return validate


def evaluate_rating_role(role: str, model: RatingModel, inputs: dict[str, RatingWindows | UserRows],
                         windows: dict[str, RatingWindows], batch_size: int, latency_batch_size: int,
                         latency_repeats: int, latency_warmup: int, device: torch.device) -> RoleResult:
    """Valid/test metrics, per-user test metrics and efficiency of one trained rating model.

    `inputs[split]` feeds the model, `windows[split]` holds the targets (the same rows)."""
    block: dict = {"model": model.config.name}
    per_user = None
    for split in ("valid", "test"):
        output = predict(model, inputs[split], batch_size, device)
        truth = windows[split].targets["rating"]
        block[split] = rating_metrics(output.logits, output.rating, truth, _class_values(model))
        if split == "test":
            per_user = per_user_rating_metrics(windows[split].targets["user"], output.logits, output.rating, truth,
                                               _class_values(model))
            per_user.insert(0, "role", role)
    latency_rows = torch.arange(min(latency_batch_size, len(windows["test"])))
    block["efficiency"] = efficiency_report(model, windows["test"].batch(latency_rows, device),
                                            n_warmup=latency_warmup, n_repeats=latency_repeats)
    log.info("evaluate %s: test %s", role, {k: round(v, 4) for k, v in block["test"].items()})
    return RoleResult(block, per_user)
