"""Ranking metrics on tiny hand-computed lists."""

from __future__ import annotations

import math

import pytest
import torch

from recdistill.data.ranking_data import InteractionLists
from recdistill.evaluation.ranking_metrics import (
    coverage,
    hit_matrix,
    per_user_ranking_metrics,
    ranking_metrics,
    relevant_counts,
)


def lists(per_user: list[list[int]]) -> InteractionLists:
    """InteractionLists holding `per_user[u]` for each user u."""
    counts = torch.tensor([len(items) for items in per_user])
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])
    return InteractionLists(indptr, torch.tensor([i for items in per_user for i in items], dtype=torch.long))


def log2(x: float) -> float:
    return math.log2(x)


def test_hit_matrix_matches_truth_per_user_and_ignores_padding() -> None:
    truth = lists([[3, 1], [], [4, 0, 4]])  # user 2 has item 4 twice
    users = torch.tensor([2, 0, 1])  # any order, any subset
    topk = torch.tensor([[4, 1, -1], [1, 2, 3], [-1, -1, -1]])
    expected = torch.tensor([[True, False, False], [True, False, True], [False, False, False]])
    assert torch.equal(hit_matrix(topk, users, truth, n_items=5), expected)
    # distinct ground-truth items: user 2 -> {0, 4}, user 0 -> {1, 3}, user 1 -> none
    assert relevant_counts(users, truth, n_items=5).tolist() == [2, 2, 0]


def test_hit_matrix_padding_is_never_a_hit_even_for_item_zero() -> None:
    truth = lists([[0]])
    assert hit_matrix(torch.tensor([[-1, 0]]), torch.tensor([0]), truth, n_items=3).tolist() == [[False, True]]


def test_per_user_metrics_hand_computed() -> None:
    hits = torch.tensor([
        [0, 0, 1, 0, 0],  # user A: one hit at rank 3, 2 relevant items
        [1, 0, 1, 1, 0],  # user B: hits at ranks 1, 3, 4, 4 relevant items
        [0, 0, 0, 0, 0],  # user C: no hit, 1 relevant item
    ], dtype=torch.bool)
    n_relevant = torch.tensor([2, 4, 1])
    got = per_user_ranking_metrics(hits, n_relevant, ks=(1, 3, 5))
    expected = {
        # k = 1: only B's first item is a hit; IDCG@1 = 1 for everyone; MAP@1 = (1/1) * P@1.
        "hr@1": [0, 1, 0], "precision@1": [0, 1, 0], "recall@1": [0, 1 / 4, 0],
        "ndcg@1": [0, 1, 0], "mrr@1": [0, 1, 0], "map@1": [0, 1, 0],
        # k = 3: A has 1 hit (rank 3), B has 2 hits (ranks 1, 3).
        "hr@3": [1, 1, 0], "precision@3": [1 / 3, 2 / 3, 0], "recall@3": [1 / 2, 2 / 4, 0],
        "ndcg@3": [(1 / log2(4)) / (1 + 1 / log2(3)),  # IDCG over min(2, 3) = 2 relevant
                   (1 + 1 / log2(4)) / (1 + 1 / log2(3) + 1 / log2(4)), 0],  # IDCG over min(4, 3) = 3
        "mrr@3": [1 / 3, 1, 0],
        # MAP@3: A: (1 / min(2, 3)) * P@3 = (1/2)(1/3); B: (1 / min(4, 3)) * (P@1 + P@3) = (1/3)(1 + 2/3)
        "map@3": [(1 / 2) * (1 / 3), (1 / 3) * (1 + 2 / 3), 0],
        # k = 5: B gains the hit at rank 4.
        "hr@5": [1, 1, 0], "precision@5": [1 / 5, 3 / 5, 0], "recall@5": [1 / 2, 3 / 4, 0],
        "ndcg@5": [(1 / log2(4)) / (1 + 1 / log2(3)),
                   (1 + 1 / log2(4) + 1 / log2(5)) / (1 + 1 / log2(3) + 1 / log2(4) + 1 / log2(5)), 0],
        "mrr@5": [1 / 3, 1, 0],
        # MAP@5: A unchanged; B: (1 / min(4, 5)) * (P@1 + P@3 + P@4) = (1/4)(1 + 2/3 + 3/4)
        "map@5": [(1 / 2) * (1 / 3), (1 / 4) * (1 + 2 / 3 + 3 / 4), 0],
    }
    assert set(expected) <= set(got)  # every built-in metric; a metric file added later may add more
    for name, values in expected.items():
        assert got[name].dtype == torch.float64
        assert got[name].tolist() == pytest.approx(values), name


def test_perfect_ranking_scores_one() -> None:
    # 2 relevant items at ranks 1 and 2: every metric but precision is 1 at k = 2, 3.
    hits = torch.tensor([[True, True, False]])
    got = per_user_ranking_metrics(hits, torch.tensor([2]), ks=(2, 3))
    for name in ("hr", "ndcg", "recall", "mrr", "map"):
        assert got[f"{name}@2"].item() == pytest.approx(1.0)
        assert got[f"{name}@3"].item() == pytest.approx(1.0)
    assert got["precision@3"].item() == pytest.approx(2 / 3)


def test_per_user_metrics_preconditions() -> None:
    hits = torch.zeros((2, 3), dtype=torch.bool)
    with pytest.raises(AssertionError, match="excluded"):
        per_user_ranking_metrics(hits, torch.tensor([1, 0]), ks=(1,))
    with pytest.raises(AssertionError, match="k=4"):
        per_user_ranking_metrics(hits, torch.tensor([1, 1]), ks=(4,))


def test_coverage_counts_distinct_items_and_skips_padding() -> None:
    topk = torch.tensor([[0, 1, 2], [1, 0, -1], [1, -1, -1]])
    assert coverage(topk, n_items=10, k=1) == pytest.approx(2 / 10)  # {0, 1}
    assert coverage(topk, n_items=10, k=3) == pytest.approx(3 / 10)  # {0, 1, 2}


def test_ranking_metrics_means_over_users() -> None:
    truth = lists([[2], [0, 3], [1]])
    users = torch.tensor([0, 1, 2])
    topk = torch.tensor([[2, 1], [1, 3], [0, -1]])
    # user 0: hit at rank 1 of 1 relevant; user 1: hit at rank 2 of 2 relevant; user 2: none.
    metrics = ranking_metrics(topk, users, truth, n_items=4, ks=(1, 2))
    assert metrics["hr@1"] == pytest.approx(1 / 3)
    assert metrics["hr@2"] == pytest.approx(2 / 3)
    assert metrics["recall@2"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert metrics["precision@2"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    # NDCG@2: user 0: 1 / 1; user 1: (1 / log2(3)) / (1 + 1 / log2(3)); user 2: 0
    assert metrics["ndcg@2"] == pytest.approx((1 + (1 / log2(3)) / (1 + 1 / log2(3))) / 3)
    assert metrics["mrr@2"] == pytest.approx((1 + 1 / 2) / 3)
    # MAP@2: user 0: (1/1) * 1; user 1: (1 / min(2, 2)) * P@2 = (1/2)(1/2)
    assert metrics["map@2"] == pytest.approx((1 + 1 / 4) / 3)
    assert metrics["coverage@1"] == pytest.approx(3 / 4)  # {2, 1, 0}
    assert metrics["coverage@2"] == pytest.approx(4 / 4)
    assert all(isinstance(value, float) for value in metrics.values())
