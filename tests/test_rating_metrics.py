"""Rating metrics on tiny hand-computed arrays."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from recdistill.evaluation.rating_metrics import (
    accuracy,
    mae,
    per_user_rating_metrics,
    rating_metrics,
    rmse,
)


def test_accuracy_mae_rmse_return_floats() -> None:
    # accuracy: matches at positions 0 and 2 of 4 -> 0.5.
    assert accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 3, 0])) == 0.5
    # errors [1, -2, 0, 1]: MAE = (1 + 2 + 0 + 1) / 4 = 1; RMSE = sqrt((1 + 4 + 0 + 1) / 4) = sqrt(1.5).
    pred, true = torch.tensor([2.0, 1.0, 3.0, 5.0]), torch.tensor([1.0, 3.0, 3.0, 4.0])
    assert mae(pred, true) == pytest.approx(1.0)
    assert rmse(pred, true) == pytest.approx(math.sqrt(1.5))
    assert all(isinstance(value, float) for value in (mae(pred, true), rmse(pred, true)))


def test_metrics_reject_mismatched_or_empty_inputs() -> None:
    with pytest.raises(AssertionError, match="equal length"):
        mae(torch.zeros(3), torch.zeros(2))
    with pytest.raises(AssertionError, match="empty"):
        rmse(torch.zeros(0), torch.zeros(0))


def test_rating_metrics_uses_argmax_plus_one_and_point_estimate() -> None:
    # argmax classes [4, 0, 2] -> predicted ratings [5, 1, 3]; true [5, 2, 3] -> accuracy 2/3.
    logits = torch.tensor([[0.0, 0, 0, 0, 9], [9.0, 0, 0, 0, 0], [0.0, 0, 9, 0, 0]])
    # estimate errors [-0.5, 0.5, 1.0]: MAE = 2/3; RMSE = sqrt((0.25 + 0.25 + 1) / 3) = sqrt(0.5).
    estimate = torch.tensor([4.5, 2.5, 4.0])
    true = torch.tensor([5.0, 2.0, 3.0])
    metrics = rating_metrics(logits, estimate, true)
    expected = {"accuracy": 2 / 3, "mae": 2 / 3, "rmse": math.sqrt(0.5)}
    assert {name: metrics[name] for name in expected} == pytest.approx(expected)  # later metric files may add more


def test_per_user_rating_metrics_one_row_per_user() -> None:
    users = torch.tensor([7, 3, 7, 7, 3])
    # predicted ratings (argmax + 1): [1, 2, 3, 1, 2]
    logits = torch.eye(3)[[0, 1, 2, 0, 1]]
    true = torch.tensor([1.0, 2.0, 2.0, 3.0, 5.0])
    estimate = torch.tensor([1.0, 2.0, 4.0, 2.0, 3.0])
    frame = per_user_rating_metrics(users, logits, estimate, true)
    # user 3 -> rows 1, 4: correct [yes, no] -> 1/2; errors [0, -2] -> MAE 1, RMSE sqrt(4 / 2) = sqrt 2.
    # user 7 -> rows 0, 2, 3: correct [yes, no, no] -> 1/3; errors [0, 2, -1]
    #   -> MAE 3/3 = 1, RMSE sqrt((0 + 4 + 1) / 3) = sqrt(5/3).
    expected = pd.DataFrame(
        {
            "user": [3, 7],
            "n": [2, 3],
            "accuracy": [1 / 2, 1 / 3],
            "mae": [1.0, 1.0],
            "rmse": [math.sqrt(2.0), math.sqrt(5 / 3)],
        }
    )
    pd.testing.assert_frame_equal(frame[list(expected.columns)], expected, check_dtype=False)  # later files may add


def test_per_user_metrics_agree_with_global_metrics_for_one_user() -> None:
    torch.manual_seed(0)
    logits, estimate = torch.randn(20, 5), torch.rand(20) * 4 + 1
    true = torch.randint(1, 6, (20,)).float()
    row = per_user_rating_metrics(torch.zeros(20, dtype=torch.long), logits, estimate, true).iloc[0]
    overall = rating_metrics(logits, estimate, true)
    assert row["n"] == 20
    assert {key: row[key] for key in overall} == pytest.approx(overall)
