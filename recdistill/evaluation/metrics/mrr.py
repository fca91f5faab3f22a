"""MRR@K: reciprocal rank of a user's first ground-truth item, when it is among the first K.

    MRR@k = 1 / (r + 1) if the first hit is entry r < k (0-based), else 0
                                                   (per user; reported as the mean over users)

Unitless, in [0, 1]. The mean reciprocal rank of Voorhees, "The TREC-8 question answering track
report", TREC 1999, cut at k, as RecBole defines it (Zhao et al., CIKM 2021).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recdistill.evaluation.metrics.catalogue import Example, Metric, RankingInputs, hit_rows

if TYPE_CHECKING:
    from torch import Tensor


def first_hit(inputs: RankingInputs) -> Tensor:
    """(U,) int64 0-based list position of each user's first hit; K (the list length) when none."""
    hits = inputs.hits  # (U, K)
    return hits.int().argmax(1).masked_fill(~hits.any(1), hits.shape[1])


def reciprocal_rank(inputs: RankingInputs, k: int) -> Tensor:
    """(U,) float64 1 / (1-based rank of the first hit) when it is within k, else 0."""
    first = inputs.memo("mrr.first_hit", lambda: first_hit(inputs))  # (U,)
    return (1.0 / (first + 1).double()).masked_fill(first >= k, 0.0)


METRIC = Metric(
    name="mrr", task="ranking", higher_is_better=True, compute=reciprocal_rank, at_k=True, order=50, headline=4,
    # first hits at ranks 3, 1, none (and rank 4, beyond k = 3)
    example=Example({"hits": hit_rows("00100", "10110", "00000", "00011"), "n_relevant": [2, 4, 1, 2]}, k=3,
                    expected=(1 / 3 + 1 + 0 + 0) / 4, rows=(1 / 3, 1, 0, 0)),
)
