"""Coverage@K, catalogue coverage: the share of all items that appear in some user's first K
recommendations.

    Coverage@k = |union over users of the first k items of their lists| / n_items

Padding entries (item -1, fewer than k rankable items) are not items. Unitless, in [0, 1]; a
property of all users' lists together, so it has no per-user values and cannot be paired user by
user. Catalogue coverage of Ge, Delgado-Battenfeld & Jannach, "Beyond accuracy: evaluating
recommender systems by coverage and serendipity", RecSys 2010.
"""

from __future__ import annotations

from recdistill.evaluation.metrics.catalogue import Example, Metric, RankingInputs


def coverage(inputs: RankingInputs, k: int) -> float:
    """Distinct items among all users' first k list entries (padding excluded) / n_items."""
    items = inputs.topk_items[:, :k].reshape(-1)  # (U * k,)
    return items[items >= 0].unique().numel() / inputs.n_items


METRIC = Metric(
    name="coverage", task="ranking", higher_is_better=True, compute=coverage, at_k=True, per_user=False, order=70,
    # first 3 entries: {0, 1, 2} of 10 items (-1 is padding)
    example=Example({"topk_items": [[0, 1, 2], [1, 0, -1], [1, -1, -1]], "n_items": 10}, k=3, expected=0.3),
)
