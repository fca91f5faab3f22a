"""Accuracy: the fraction of ratings whose predicted class is the true rating.

    accuracy = (1 / N) * sum_n [pred_class_n == true_class_n]

pred_class is the model's most likely rating class (argmax of its class logits + 1) and
true_class the true rating rounded to an integer; unitless, in [0, 1]. Exact-match accuracy of a
rating classifier, the headline rating metric of the study (see DESIGN.md, "Tasks and protocols").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recdistill.evaluation.metrics.catalogue import Example, Metric, RatingInputs

if TYPE_CHECKING:
    from torch import Tensor


def correct(inputs: RatingInputs, k: None = None) -> Tensor:
    """(N,) float64: 1.0 where the predicted class equals the true class, else 0.0."""
    return (inputs.pred_class == inputs.true_class).double()


METRIC = Metric(
    name="accuracy", task="rating", higher_is_better=True, compute=correct, order=10, headline=1,
    # classes match at positions 0 and 2 of 4 -> 2 / 4
    example=Example({"pred_class": [1, 2, 3, 4], "true_class": [1, 0, 3, 0]}, expected=0.5, rows=(1, 0, 1, 0)),
)
