"""HR@K, hit ratio: whether any of a user's first K recommendations is a ground-truth item.

    HR@k = 1 if hit_i for some i < k, else 0          (per user; reported as the mean over users)

hit_i = 1 when list entry i (0-based, best first) is one of the user's ground-truth items; unitless,
in [0, 1]. As defined by RecBole (Zhao et al., "RecBole: towards a unified, comprehensive and
efficient framework for recommendation algorithms", CIKM 2021), the hit ratio of He et al., "Neural
collaborative filtering", WWW 2017, for users with one or more ground-truth items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recdistill.evaluation.metrics.catalogue import Example, Metric, RankingInputs, hit_rows

if TYPE_CHECKING:
    from torch import Tensor


def hit(inputs: RankingInputs, k: int) -> Tensor:
    """(U,) float64: 1.0 for a user with a hit among the first k entries of the list, else 0.0."""
    return (inputs.n_hits[:, k - 1] > 0).double()


METRIC = Metric(
    name="hr", task="ranking", higher_is_better=True, compute=hit, at_k=True, order=10, headline=2,
    # first hits at ranks 3, 1 and none: only the second user has one within k = 2
    example=Example({"hits": hit_rows("0010", "1000", "0000"), "n_relevant": [1, 1, 1]}, k=2,
                    expected=1 / 3, rows=(0, 1, 0)),
)
