"""Recall@K: the fraction of a user's ground-truth items among their first K recommendations.

    Recall@k = (sum_{i < k} hit_i) / n_relevant      (per user; reported as the mean over users)

hit_i = 1 when list entry i (0-based, best first) is a ground-truth item, n_relevant the number of
distinct ground-truth items (> 0); unitless, in [0, 1]. Recall of information retrieval (Manning,
Raghavan & Schütze, "Introduction to Information Retrieval", 2008, ch. 8) cut at k, as RecBole
defines it (Zhao et al., CIKM 2021).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recdistill.evaluation.metrics.catalogue import Example, Metric, RankingInputs, hit_rows

if TYPE_CHECKING:
    from torch import Tensor


def recall(inputs: RankingInputs, k: int) -> Tensor:
    """(U,) float64 hits among the first k entries / the user's number of ground-truth items."""
    return inputs.n_hits[:, k - 1] / inputs.n_relevant


METRIC = Metric(
    name="recall", task="ranking", higher_is_better=True, compute=recall, at_k=True, order=30, headline=3,
    # within k = 3: 1 of 2, 2 of 4 and 0 of 1 ground-truth items found
    example=Example({"hits": hit_rows("00100", "10110", "00000"), "n_relevant": [2, 4, 1]}, k=3,
                    expected=(1 / 2 + 2 / 4 + 0) / 3, rows=(1 / 2, 2 / 4, 0)),
)
