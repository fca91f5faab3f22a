"""The rating evaluator: every rating metric of the catalogue (`recdistill.evaluation.metrics`).

Accuracy compares the predicted class (argmax of the class logits + 1) with the true rating
rounded to an integer; MAE and RMSE use the model's point estimate. Every function returns plain
Python floats (computed in float64), so results go straight into JSON and tables. Inputs are 1-D
tensors of equal length N (logits (N, C)), on any device.
"""

from __future__ import annotations

import pandas as pd
import torch

from recdistill.evaluation.metrics import RatingInputs, get_metric, metrics_for


def _check_pair(pred: torch.Tensor, true: torch.Tensor) -> None:
    assert pred.dim() == 1 and pred.shape == true.shape, (
        f"expected two 1-D tensors of equal length, got {tuple(pred.shape)} and {tuple(true.shape)}"
    )
    assert pred.numel() > 0, "metrics of an empty set are undefined"


def accuracy(pred_class: torch.Tensor, true_class: torch.Tensor) -> float:
    """Fraction of positions where the predicted class equals the true class."""
    _check_pair(pred_class, true_class)
    return get_metric("accuracy").value(RatingInputs(pred_class=pred_class, true_class=true_class))


def mae(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Mean absolute error."""
    _check_pair(pred, true)
    return get_metric("mae").value(RatingInputs(estimate=pred, rating=true))


def rmse(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Root mean squared error."""
    _check_pair(pred, true)
    return get_metric("rmse").value(RatingInputs(estimate=pred, rating=true))


def rating_inputs(logits: torch.Tensor, estimate: torch.Tensor, true_rating: torch.Tensor,
                  class_values: torch.Tensor | None = None) -> RatingInputs:
    """What the rating metrics read: the argmax class and the true rating's class (both 1-based),
    estimate, rating. `class_values` (C,) is the rating of each class (None: 1..C); the true class is
    the nearest one (the data's ratings lie on the scale)."""
    assert logits.dim() == 2 and logits.shape[0] == true_rating.shape[0], (
        f"logits must be (N, C) matching {tuple(true_rating.shape)} ratings, got {tuple(logits.shape)}"
    )
    _check_pair(estimate, true_rating)
    if class_values is None:
        true_class = true_rating.round().long()  # (N,)
    else:
        values = class_values.to(true_rating.device, torch.float32)  # (C,)
        true_class = (true_rating.float()[:, None] - values[None, :]).abs().argmin(dim=1) + 1  # (N,)
    return RatingInputs(pred_class=logits.argmax(dim=-1) + 1, true_class=true_class,  # (N,) each
                        estimate=estimate, rating=true_rating)


def rating_metrics(logits: torch.Tensor, rating_estimate: torch.Tensor, true_rating: torch.Tensor,
                   class_values: torch.Tensor | None = None) -> dict[str, float]:
    """Every rating metric of the catalogue, in its order: accuracy, mae, rmse (and any added one)."""
    inputs = rating_inputs(logits, rating_estimate, true_rating, class_values)
    return {metric.name: metric.value(inputs) for metric in metrics_for("rating")}


def per_user_rating_metrics(
    users: torch.Tensor, logits: torch.Tensor, estimate: torch.Tensor, true: torch.Tensor,
    class_values: torch.Tensor | None = None,
) -> pd.DataFrame:
    """One row per user (sorted by id): user, n, then every per-user rating metric; vectorised."""
    inputs = rating_inputs(logits, estimate, true, class_values)
    assert users.shape == true.shape, f"users {tuple(users.shape)} vs ratings {tuple(true.shape)}"
    user_ids, slot = torch.unique(users, return_inverse=True)  # (U,), (N,) each row's user slot
    n_users = user_ids.shape[0]
    counts = torch.bincount(slot, minlength=n_users).double()  # (U,)

    def per_user_mean(values: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(n_users, dtype=torch.float64, device=values.device)
        return total.index_add_(0, slot, values) / counts  # (U,)

    columns = {metric.name: metric.finish(per_user_mean(metric.terms(inputs))).cpu().numpy()
               for metric in metrics_for("rating") if metric.per_user}
    return pd.DataFrame({"user": user_ids.cpu().numpy(), "n": counts.long().cpu().numpy(), **columns})
