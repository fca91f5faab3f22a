"""Precision@K: the fraction of a user's first K recommendations that are ground-truth items.

    Precision@k = (sum_{i < k} hit_i) / k          (per user; reported as the mean over users)

hit_i = 1 when list entry i (0-based, best first) is a ground-truth item; padding entries (fewer
than k rankable items) count as misses; unitless, in [0, 1]. Precision of information retrieval
(Manning, Raghavan & Schütze, "Introduction to Information Retrieval", 2008, ch. 8) cut at k, as
RecBole defines it (Zhao et al., CIKM 2021).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recdistill.evaluation.metrics.catalogue import Example, Metric, RankingInputs, hit_rows

if TYPE_CHECKING:
    from torch import Tensor


def precision(inputs: RankingInputs, k: int) -> Tensor:
    """(U,) float64 hits among the first k entries / k."""
    return inputs.n_hits[:, k - 1] / k


METRIC = Metric(
    name="precision", task="ranking", higher_is_better=True, compute=precision, at_k=True, order=40,
    # within k = 3: 1, 2 and 0 hits
    example=Example({"hits": hit_rows("00100", "10110", "00000"), "n_relevant": [2, 4, 1]}, k=3,
                    expected=(1 / 3 + 2 / 3 + 0) / 3, rows=(1 / 3, 2 / 3, 0)),
)
