"""RMSE: root mean squared error of the predicted rating, in rating units.

    RMSE = sqrt((1 / N) * sum_n (estimate_n - rating_n) ** 2)

The per-row terms are squared errors; the root is taken after averaging (over everybody, or over
one user's ratings for per-user values). As in Herlocker, Konstan, Terveen & Riedl, "Evaluating
collaborative filtering recommender systems", ACM TOIS 22(1), 2004.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recdistill.evaluation.metrics.catalogue import Example, Metric, RatingInputs

if TYPE_CHECKING:
    from torch import Tensor


def squared_error(inputs: RatingInputs, k: None = None) -> Tensor:
    """(N,) float64 (estimate - rating) ** 2, computed in float64."""
    return (inputs.estimate.double() - inputs.rating.double()).square()


def root(mean_squared_error: Tensor) -> Tensor:
    """Square root of a mean of squared errors."""
    return mean_squared_error.sqrt()


METRIC = Metric(
    name="rmse", task="rating", higher_is_better=False, compute=squared_error, finish=root, order=30, headline=3,
    # errors [1, -2, 0, 1] -> sqrt((1 + 4 + 0 + 1) / 4) = sqrt(1.5)
    example=Example({"estimate": [2.0, 1.0, 3.0, 5.0], "rating": [1.0, 3.0, 3.0, 4.0]}, expected=1.5 ** 0.5,
                    rows=(1, 4, 0, 1)),
)
