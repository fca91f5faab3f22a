"""NDCG@K: normalised discounted cumulative gain of a user's first K recommendations.

    DCG@k  = sum_{i < k, hit_i} 1 / log2(i + 2)
    IDCG@k = sum_{i < min(n_relevant, k)} 1 / log2(i + 2)
    NDCG@k = DCG@k / IDCG@k                          (per user; reported as the mean over users)

hit_i = 1 when list entry i (0-based, best first) is a ground-truth item, n_relevant the number of
distinct ground-truth items (> 0); unitless, in [0, 1]. Järvelin & Kekäläinen, "Cumulated gain-based
evaluation of IR techniques", ACM TOIS 20(4), 2002, with binary relevance and a log2 discount, and
the ideal list of min(n_relevant, k) hits as RecBole defines it (Zhao et al., CIKM 2021).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from recdistill.evaluation.metrics.catalogue import Example, Metric, RankingInputs, hit_rows

if TYPE_CHECKING:
    from torch import Tensor


def ndcg(inputs: RankingInputs, k: int) -> Tensor:
    """(U,) float64 NDCG@k of each user's list."""
    discount = inputs.memo("ndcg.discount", lambda: 1.0 / (inputs.rank + 1).log2())  # (K,) 1 / log2(i + 2)
    ideal = inputs.memo("ndcg.ideal", lambda: discount.cumsum(0))  # (K,) IDCG with i + 1 relevant items
    dcg = inputs.memo("ndcg.dcg", lambda: (inputs.hit * discount).cumsum(1))  # (U, K) DCG at each cut-off
    n_ideal = inputs.n_relevant.clamp(max=k)  # (U,) min(n_relevant, k)
    return dcg[:, k - 1] / ideal[n_ideal - 1]


# user A: a hit at rank 3 of 2 relevant; user B: hits at ranks 1 and 3 of 4 relevant; user C: none
_A = (1 / math.log2(4)) / (1 + 1 / math.log2(3))  # IDCG over min(2, 3) = 2 ideal hits
_B = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))  # IDCG over min(4, 3) = 3
METRIC = Metric(
    name="ndcg", task="ranking", higher_is_better=True, compute=ndcg, at_k=True, order=20, headline=1,
    example=Example({"hits": hit_rows("00100", "10110", "00000"), "n_relevant": [2, 4, 1]}, k=3,
                    expected=(_A + _B) / 3, rows=(_A, _B, 0)),
)
