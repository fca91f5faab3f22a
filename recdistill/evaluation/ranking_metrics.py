"""The ranking evaluator: every ranking metric of the catalogue (`recdistill.evaluation.metrics`)
on users' top-K lists, defined as RecBole defines them (each metric's module gives its formula).

`hit_matrix` and `relevant_counts` turn top-K lists and ground truth into what per-user metrics
read: hit_i = 1 when list entry i (0-based, best first) is one of the user's ground-truth items, and
n_relevant = number of distinct ground-truth items (> 0). List-level metrics (coverage) read the
lists themselves. Lists may be padded with item -1 (fewer than K rankable items); padding is never
a hit. Reported numbers are means over users, in float64, as plain Python floats.
"""

from __future__ import annotations

from typing import Sequence

import torch

from recdistill.data.ranking_data import InteractionLists
from recdistill.evaluation.metrics import RankingInputs, columns_for, get_metric


def _truth_keys(users: torch.Tensor, truth: InteractionLists, n_items: int) -> torch.Tensor:
    """Sorted distinct keys row * n_items + item of the ground truth of `users` (row = position in `users`)."""
    row, item = truth.flat(users.cpu())  # (nnz,), (nnz,)
    return torch.unique(row * n_items + item)  # (nnz_distinct,) sorted


def relevant_counts(users: torch.Tensor, truth: InteractionLists, n_items: int) -> torch.Tensor:
    """(U,) number of distinct ground-truth items of each of `users`."""
    keys = _truth_keys(users, truth, n_items)
    return torch.bincount(keys // n_items, minlength=len(users)).to(users.device)  # (U,)


def hit_matrix(topk_items: torch.Tensor, users: torch.Tensor, truth: InteractionLists, n_items: int) -> torch.Tensor:
    """(U, K) bool: whether each recommended item is one of its user's ground-truth items."""
    assert topk_items.dim() == 2 and topk_items.shape[0] == users.shape[0], (
        f"topk_items must be (U, K) matching {tuple(users.shape)} users, got {tuple(topk_items.shape)}"
    )
    keys = _truth_keys(users, truth, n_items).to(topk_items.device)  # (nnz,)
    if keys.numel() == 0:
        return torch.zeros(topk_items.shape, dtype=torch.bool, device=topk_items.device)
    rows = torch.arange(len(users), device=topk_items.device)[:, None]  # (U, 1)
    query = rows * n_items + topk_items.clamp(min=0)  # (U, K)
    position = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)  # (U, K)
    return (keys[position] == query) & (topk_items >= 0)  # (U, K)


def _check_ks(ks: Sequence[int], width: int) -> None:
    assert len(ks) > 0, "no cut-offs given (ks is empty)"
    for k in ks:
        assert 1 <= k <= width, f"cut-off k={k} must be in [1, {width}] (the top-K lists have {width} entries)"


def per_user_ranking_metrics(hits: torch.Tensor, n_relevant: torch.Tensor, ks: Sequence[int]
                             ) -> dict[str, torch.Tensor]:
    """Column (`ndcg@10`) -> (U,) float64 values of every per-user ranking metric, for each k in
    `ks` the metrics cut at K in catalogue order (then any metric not cut at K)."""
    assert hits.dim() == 2 and n_relevant.shape == hits.shape[:1], (
        f"hits must be (U, K) matching n_relevant (U,), got {tuple(hits.shape)} and {tuple(n_relevant.shape)}"
    )
    assert bool((n_relevant > 0).all()), "users without ground-truth items must be excluded before ranking metrics"
    _check_ks(ks, hits.shape[1])
    inputs = RankingInputs(hits=hits, n_relevant=n_relevant.to(hits.device))
    return {column.name: column.metric.terms(inputs, column.k)
            for column in columns_for("ranking", ks) if column.metric.per_user}


def coverage(topk_items: torch.Tensor, n_items: int, k: int) -> float:
    """Distinct items in all top-`k` lists (padding -1 excluded) / n_items."""
    return get_metric("coverage").value(RankingInputs(topk_items=topk_items, n_items=n_items), k)


def summarize_ranking(per_user: dict[str, torch.Tensor], topk_items: torch.Tensor, n_items: int,
                      ks: Sequence[int]) -> dict[str, float]:
    """Means over users of `per_user` metrics, then every list-level metric (coverage@k) for each k."""
    summary = {name: values.mean().item() for name, values in per_user.items()}
    lists = RankingInputs(topk_items=topk_items, n_items=n_items)
    summary.update({column.name: column.metric.value(lists, column.k)
                    for column in columns_for("ranking", ks) if not column.metric.per_user})
    return summary


def ranking_metrics(topk_items: torch.Tensor, users: torch.Tensor, truth: InteractionLists, n_items: int,
                    ks: Sequence[int]) -> dict[str, float]:
    """Every metric at every k, averaged over `users` (each must have ground truth), plus coverage@k."""
    hits = hit_matrix(topk_items, users, truth, n_items)  # (U, K)
    per_user = per_user_ranking_metrics(hits, relevant_counts(users, truth, n_items), ks)
    return summarize_ranking(per_user, topk_items, n_items, ks)
