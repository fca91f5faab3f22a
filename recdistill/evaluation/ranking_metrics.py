"""Top-K ranking metrics as tensor functions, defined as RecBole defines them.

For one user with top-K list r_0, r_1, ... (best first), hit_i = 1 when r_i is one of the user's
ground-truth items, and n_relevant = number of distinct ground-truth items (> 0), at cut-off k:

    HR@k         1 if any hit_i for i < k, else 0
    Precision@k  (sum_{i<k} hit_i) / k
    Recall@k     (sum_{i<k} hit_i) / n_relevant
    NDCG@k       DCG / IDCG, DCG = sum_{i<k, hit_i} 1 / log2(i + 2),
                 IDCG = sum_{i < min(n_relevant, k)} 1 / log2(i + 2)
    MRR@k        1 / (rank of the first hit, 1-based) if it is within k, else 0
    MAP@k        (1 / min(n_relevant, k)) * sum_{i<k, hit_i} Precision@(i + 1)
    Coverage@k   distinct items over all users' top-k lists / n_items (a catalogue-level number)

Lists may be padded with item -1 (fewer than K rankable items); padding is never a hit. Reported
numbers are means over users, in float64, as plain Python floats.
"""

from __future__ import annotations

from typing import Sequence

import torch

from recdistill.data.ranking_data import InteractionLists

#: Per-user metric names, in the order they are reported for each k.
PER_USER_METRICS = ("hr", "ndcg", "recall", "precision", "mrr", "map")


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
    """`{metric}@{k}` -> (U,) float64 values for each metric of `PER_USER_METRICS` and each k."""
    assert hits.dim() == 2 and n_relevant.shape == hits.shape[:1], (
        f"hits must be (U, K) matching n_relevant (U,), got {tuple(hits.shape)} and {tuple(n_relevant.shape)}"
    )
    assert bool((n_relevant > 0).all()), "users without ground-truth items must be excluded before ranking metrics"
    _check_ks(ks, hits.shape[1])
    device = hits.device
    hit = hits.double()  # (U, K)
    n_relevant = n_relevant.to(device)
    rank = torch.arange(1, hits.shape[1] + 1, device=device, dtype=torch.float64)  # (K,) 1-based
    discount = 1.0 / torch.log2(rank + 1)  # (K,) 1 / log2(i + 2) for 0-based i
    ideal = torch.cumsum(discount, 0)  # (K,) IDCG with i + 1 relevant items
    n_hits = torch.cumsum(hit, 1)  # (U, K) hits within the first i + 1
    dcg = torch.cumsum(hit * discount, 1)  # (U, K)
    average_precision = torch.cumsum(hit * n_hits / rank, 1)  # (U, K) sum of Precision@(i+1) at hits
    any_hit = hits.any(1)  # (U,)
    first_hit = torch.where(any_hit, hits.int().argmax(1), hits.shape[1])  # (U,) 0-based; K when none
    metrics: dict[str, torch.Tensor] = {}
    for k in ks:
        found = n_hits[:, k - 1]  # (U,)
        denominator = n_relevant.clamp(max=k)  # (U,) min(n_relevant, k)
        metrics[f"hr@{k}"] = (found > 0).double()
        metrics[f"ndcg@{k}"] = dcg[:, k - 1] / ideal[denominator - 1]
        metrics[f"recall@{k}"] = found / n_relevant
        metrics[f"precision@{k}"] = found / k
        metrics[f"mrr@{k}"] = torch.where(first_hit < k, 1.0 / (first_hit + 1).double(), 0.0)
        metrics[f"map@{k}"] = average_precision[:, k - 1] / denominator
    return metrics


def coverage(topk_items: torch.Tensor, n_items: int, k: int) -> float:
    """Distinct items in all top-`k` lists (padding -1 excluded) / n_items."""
    items = topk_items[:, :k].reshape(-1)  # (U * k,)
    seen = torch.zeros(n_items, dtype=torch.bool, device=items.device)
    seen[items[items >= 0]] = True
    return seen.sum().item() / n_items


def summarize_ranking(per_user: dict[str, torch.Tensor], topk_items: torch.Tensor, n_items: int,
                      ks: Sequence[int]) -> dict[str, float]:
    """Means over users of `per_user` metrics, plus `coverage@k` for each k."""
    summary = {name: values.mean().item() for name, values in per_user.items()}
    summary.update({f"coverage@{k}": coverage(topk_items, n_items, k) for k in ks})
    return summary


def ranking_metrics(topk_items: torch.Tensor, users: torch.Tensor, truth: InteractionLists, n_items: int,
                    ks: Sequence[int]) -> dict[str, float]:
    """Every metric at every k, averaged over `users` (each must have ground truth), plus coverage@k."""
    hits = hit_matrix(topk_items, users, truth, n_items)  # (U, K)
    per_user = per_user_ranking_metrics(hits, relevant_counts(users, truth, n_items), ks)
    return summarize_ranking(per_user, topk_items, n_items, ks)
