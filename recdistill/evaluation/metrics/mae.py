"""MAE: mean absolute error of the predicted rating, in rating units.

    MAE = (1 / N) * sum_n |estimate_n - rating_n|

estimate is the model's point estimate of the rating (its expected rating), rating the true one;
in [0, rating range]. As in Herlocker, Konstan, Terveen & Riedl, "Evaluating collaborative
filtering recommender systems", ACM TOIS 22(1), 2004 (predictive accuracy metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recdistill.evaluation.metrics.catalogue import Example, Metric, RatingInputs

if TYPE_CHECKING:
    from torch import Tensor


def absolute_error(inputs: RatingInputs, k: None = None) -> Tensor:
    """(N,) float64 |estimate - rating|, computed in float64."""
    return (inputs.estimate.double() - inputs.rating.double()).abs()


METRIC = Metric(
    name="mae", task="rating", higher_is_better=False, compute=absolute_error, order=20, headline=2,
    # errors [1, -2, 0, 1] -> (1 + 2 + 0 + 1) / 4
    example=Example({"estimate": [2.0, 1.0, 3.0, 5.0], "rating": [1.0, 3.0, 3.0, 4.0]}, expected=1.0,
                    rows=(1, 2, 0, 1)),
)
