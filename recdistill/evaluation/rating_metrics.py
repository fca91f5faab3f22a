"""Rating metrics: accuracy of the predicted class, MAE and RMSE of the point estimate.

Every function returns plain Python floats (computed in float64), so results go straight into
JSON and tables. Inputs are 1-D tensors of equal length, on any device.
"""

from __future__ import annotations

import pandas as pd
import torch


def _check_pair(pred: torch.Tensor, true: torch.Tensor) -> None:
    assert pred.dim() == 1 and pred.shape == true.shape, (
        f"expected two 1-D tensors of equal length, got {tuple(pred.shape)} and {tuple(true.shape)}"
    )
    assert pred.numel() > 0, "metrics of an empty set are undefined"


def accuracy(pred_class: torch.Tensor, true_class: torch.Tensor) -> float:
    """Fraction of positions where the predicted class equals the true class."""
    _check_pair(pred_class, true_class)
    return (pred_class == true_class).double().mean().item()


def mae(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Mean absolute error."""
    _check_pair(pred, true)
    return (pred.double() - true.double()).abs().mean().item()


def rmse(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Root mean squared error."""
    _check_pair(pred, true)
    return (pred.double() - true.double()).square().mean().sqrt().item()


def _predicted_rating_class(logits: torch.Tensor, true_rating: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(argmax class + 1, true rating rounded to an integer), both long, shape (N,)."""
    assert logits.dim() == 2 and logits.shape[0] == true_rating.shape[0], (
        f"logits must be (N, C) matching {tuple(true_rating.shape)} ratings, got {tuple(logits.shape)}"
    )
    return logits.argmax(dim=-1) + 1, true_rating.round().long()


def rating_metrics(logits: torch.Tensor, rating_estimate: torch.Tensor, true_rating: torch.Tensor) -> dict[str, float]:
    """accuracy (argmax class + 1 == true rating), mae and rmse (of the point estimate)."""
    pred_class, true_class = _predicted_rating_class(logits, true_rating)
    return {
        "accuracy": accuracy(pred_class, true_class),
        "mae": mae(rating_estimate, true_rating),
        "rmse": rmse(rating_estimate, true_rating),
    }


def per_user_rating_metrics(
    users: torch.Tensor, logits: torch.Tensor, estimate: torch.Tensor, true: torch.Tensor
) -> pd.DataFrame:
    """One row per user (sorted by id): user, n, accuracy, mae, rmse; vectorised, no user loop."""
    _check_pair(estimate, true)
    assert users.shape == true.shape, f"users {tuple(users.shape)} vs ratings {tuple(true.shape)}"
    pred_class, true_class = _predicted_rating_class(logits, true)
    user_ids, slot = torch.unique(users, return_inverse=True)  # (U,), (N,) each row's user slot
    n_users = user_ids.shape[0]
    counts = torch.bincount(slot, minlength=n_users).double()  # (U,)
    error = estimate.double() - true.double()  # (N,)
    correct = (pred_class == true_class).double()  # (N,)

    def per_user_mean(values: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(n_users, dtype=torch.float64, device=values.device)
        return total.index_add_(0, slot, values) / counts  # (U,)

    return pd.DataFrame(
        {
            "user": user_ids.cpu().numpy(),
            "n": counts.long().cpu().numpy(),
            "accuracy": per_user_mean(correct).cpu().numpy(),
            "mae": per_user_mean(error.abs()).cpu().numpy(),
            "rmse": per_user_mean(error.square()).sqrt().cpu().numpy(),
        }
    )
