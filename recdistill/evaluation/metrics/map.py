"""MAP@K: mean average precision of a user's first K recommendations.

    AP@k = (1 / min(n_relevant, k)) * sum_{i < k, hit_i} Precision@(i + 1)
                                                   (per user; MAP@k is the mean over users)

hit_i = 1 when list entry i (0-based, best first) is a ground-truth item, n_relevant the number of
distinct ground-truth items (> 0); unitless, in [0, 1]. Average precision of information retrieval
(Manning, Raghavan & Schütze, "Introduction to Information Retrieval", 2008, ch. 8) normalised by
min(n_relevant, k), as RecBole defines it (Zhao et al., CIKM 2021).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recdistill.evaluation.metrics.catalogue import Example, Metric, RankingInputs, hit_rows

if TYPE_CHECKING:
    from torch import Tensor


def average_precision(inputs: RankingInputs, k: int) -> Tensor:
    """(U,) float64 AP@k of each user's list."""
    # (U, K) sum of Precision@(i + 1) over the hits among the first i + 1 entries
    summed = inputs.memo("map.summed", lambda: (inputs.hit * inputs.n_hits / inputs.rank).cumsum(1))
    return summed[:, k - 1] / inputs.n_relevant.clamp(max=k)


METRIC = Metric(
    name="map", task="ranking", higher_is_better=True, compute=average_precision, at_k=True, order=60,
    # user A: a hit at rank 3 of 2 relevant -> (1 / 2) * P@3 = (1 / 2) * (1 / 3);
    # user B: hits at ranks 1, 3, 4 of 4 relevant -> (1 / 4) * (P@1 + P@3 + P@4) = (1 / 4) * (1 + 2 / 3 + 3 / 4)
    example=Example({"hits": hit_rows("00100", "10110", "00000"), "n_relevant": [2, 4, 1]}, k=5,
                    expected=(1 / 6 + 29 / 48 + 0) / 3, rows=(1 / 6, 29 / 48, 0)),
)
