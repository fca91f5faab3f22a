"""Top-K ranking evaluator on a tiny split and a model whose scores are a known table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from recdistill.data.ranking_data import RankingData
from recdistill.data.tie_keys import TieKeys
from recdistill.evaluation.ranking_eval import (
    TopK,
    evaluate_ranking,
    full_ranking_topk,
    sample_negatives,
    sampled_ranking_topk,
    tie_topk,
    topk_frame,
)
from recdistill.models.ranking_base import RankingModel, RankingOutput

N_USERS, N_ITEMS = 4, 12  # items 8..11 are never interacted with
SPLITS = {  # user -> items, in time order
    "train": {0: [0, 1], 1: [4], 2: [1, 2, 3], 3: [5]},
    "valid": {0: [2], 1: [5, 6], 3: [6]},
    "test": {0: [3], 1: [7, 0], 2: [4]},
}


def make_data() -> RankingData:
    frames, row = {}, 0
    for split, per_user in SPLITS.items():
        records = []
        for user, items in per_user.items():
            for item in items:
                records.append({"user": user, "item": item, "timestamp": row, "row": row})
                row += 1
        frames[split] = pd.DataFrame(records)
    return RankingData(frames, n_users=N_USERS, n_items=N_ITEMS, max_length=3)


class TableModel(RankingModel):
    """score(user, item) = table[user, item]: state is the user's one-hot row, item vectors the columns."""

    input_kind = "none"

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.float())  # (U, I)
        self.hidden_dim = table.shape[0]
        self.seen_training_flags: list[bool] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> RankingOutput:
        self.seen_training_flags.append(self.training)
        state = torch.eye(self.hidden_dim)[batch["user"]]  # (B, U)
        return RankingOutput(state, self, {})

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.table.T[items]  # (n, U)


def random_model(seed: int = 0) -> TableModel:
    generator = torch.Generator().manual_seed(seed)
    return TableModel(torch.randperm(N_USERS * N_ITEMS, generator=generator).view(N_USERS, N_ITEMS) / 7.0)


def by_item_id_model() -> TableModel:
    """Every user ranks items by id: item 0 first."""
    return TableModel(-torch.arange(N_ITEMS, dtype=torch.float32).expand(N_USERS, N_ITEMS))


def input_items(split: str, user: int) -> set[int]:
    reads = {"train": ["train"], "valid": ["train"], "test": ["train", "valid"]}[split]
    return {item for name in reads for item in SPLITS[name].get(user, [])}


def tie_key(data: RankingData, user: int, item: int) -> int:
    return int(data.ties.pairs(torch.tensor([user]), torch.tensor([item]))[0, 0])


def reference_topk(model: TableModel, split: str, k: int, mask: bool, data: RankingData | None = None
                   ) -> list[list[int]]:
    """Dense brute force: each user's items by (score desc, tie key desc), history dropped when `mask`."""
    table, data = model.table.detach(), data or make_data()
    result = []
    for user in range(N_USERS):
        items = [i for i in range(N_ITEMS) if not (mask and i in input_items(split, user))]
        items.sort(key=lambda i: (-table[user, i].item(), -tie_key(data, user, i)))
        result.append((items + [-1] * k)[:k])
    return result


@pytest.mark.parametrize("split", ["valid", "test"])
def test_history_masking_removes_exactly_the_input_items(split: str) -> None:
    data, model = make_data(), random_model()
    users = torch.arange(N_USERS)
    topk = full_ranking_topk(model, data, split, N_ITEMS, users=users, device="cpu")
    for user in range(N_USERS):
        ranked = [i for i in topk.items[user].tolist() if i >= 0]
        assert set(ranked) == set(range(N_ITEMS)) - input_items(split, user)
        assert len(ranked) == len(set(ranked))
        n_masked = len(input_items(split, user))
        assert topk.items[user, N_ITEMS - n_masked:].tolist() == [-1] * n_masked  # padding at the end
        assert torch.isinf(topk.scores[user, N_ITEMS - n_masked:]).all()
    assert topk.items.tolist() == reference_topk(model, split, N_ITEMS, mask=True)


def test_topk_independent_of_item_chunk_and_batch_size() -> None:
    data, model = make_data(), random_model(seed=3)
    users = torch.tensor([3, 0, 2, 1])
    expected = full_ranking_topk(model, data, "test", 5, users=users, device="cpu")
    for chunk in (1, 3, N_ITEMS + 5):
        for batch_size in (1, 3, 1024):
            got = full_ranking_topk(model, data, "test", 5, users=users, item_chunk=chunk, batch_size=batch_size,
                                    device="cpu")
            assert torch.equal(got.users, users)
            assert torch.equal(got.items, expected.items), (chunk, batch_size)
            assert torch.equal(got.scores, expected.scores), (chunk, batch_size)
    reference = reference_topk(model, "test", 5, mask=True)
    assert expected.items.tolist() == [reference[u] for u in users.tolist()]
    assert expected.items.dtype == torch.int64 and expected.scores.dtype == torch.float32


def test_ties_follow_the_tie_key_whatever_the_chunking() -> None:
    data, model = make_data(), TableModel(torch.zeros(N_USERS, N_ITEMS))
    reference = reference_topk(model, "valid", 4, mask=True, data=data)
    assert reference[0] != [2, 3, 4, 5] or reference[2] != [0, 4, 5, 6]  # not the order of internal ids
    for chunk in (1, 2, 5, 100):
        for batch_size in (1, 2):
            topk = full_ranking_topk(model, data, "valid", 4, users=torch.tensor([0, 2]), item_chunk=chunk,
                                     batch_size=batch_size, device="cpu")
            assert topk.items.tolist() == [reference[0], reference[2]], (chunk, batch_size)


def test_tie_topk_orders_equal_scores_by_key() -> None:
    ties = TieKeys.by_index(5, 2, 5)
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    users, items = torch.tensor([0, 1]), torch.arange(5)
    values, index = tie_topk(scores, 2, users, items, ties)
    keys = ties.pairs(users, items)  # (2, 5)
    threes = sorted([1, 2, 4], key=lambda i: -int(keys[0, i]))
    assert index[0].tolist() == threes[:2]
    assert index[1].tolist() == keys[1].argsort(descending=True)[:2].tolist()
    assert values.tolist() == [[3.0, 3.0], [0.0, 0.0]]
    wide_values, wide_index = tie_topk(scores, 7, users, items, ties)  # k beyond the width: every column, sorted
    assert wide_index[0].tolist() == threes + [3, 0]
    assert wide_values.shape == (2, 5)


def test_a_different_seed_orders_ties_differently() -> None:
    """The seed enters the key: over seeds, each tied item leads some lists."""
    scores, users, items = torch.zeros(1, 6), torch.tensor([0]), torch.arange(6)
    leaders = {int(tie_topk(scores, 1, users, items, TieKeys.by_index(seed, 1, 6))[1][0, 0]) for seed in range(60)}
    assert leaders == set(range(6))


def test_nan_scores_are_an_error() -> None:
    table = torch.zeros(N_USERS, N_ITEMS)
    table[1, 9] = float("nan")  # 0 * NaN: item 9 scores NaN for every user of the one-hot product
    data, model = make_data(), TableModel(table)
    with pytest.raises(ValueError, match="NaN scores for 3 users"):
        full_ranking_topk(model, data, "valid", 2, item_chunk=5, device="cpu")


def test_mask_history_off_lets_history_items_rank() -> None:
    data, model = make_data(), by_item_id_model()
    topk = full_ranking_topk(model, data, "test", 3, mask_history=False, item_chunk=5, device="cpu")
    assert topk.users.tolist() == [0, 1, 2]  # users with test items
    assert topk.items.tolist() == [[0, 1, 2]] * 3  # items 0, 1, 2 are in users' histories
    masked = full_ranking_topk(model, data, "test", 3, item_chunk=5, device="cpu")
    assert masked.items.tolist() == [[3, 4, 5], [0, 1, 2], [0, 4, 5]]


def test_padding_when_k_exceeds_rankable_items() -> None:
    data, model = make_data(), by_item_id_model()
    topk = full_ranking_topk(model, data, "test", N_ITEMS + 3, users=torch.tensor([1]), item_chunk=4,
                             device="cpu")
    # user 1 reads train [4] and valid [5, 6]: 9 rankable items, then 6 padding entries
    assert topk.items.tolist() == [[0, 1, 2, 3, 7, 8, 9, 10, 11] + [-1] * 6]
    assert topk.scores[0, :9].tolist() == [-i for i in (0, 1, 2, 3, 7, 8, 9, 10, 11)]
    assert torch.isinf(topk.scores[0, 9:]).all() and (topk.scores[0, 9:] < 0).all()


def test_training_flag_restored_and_eval_used() -> None:
    data, model = make_data(), random_model()
    model.train()
    full_ranking_topk(model, data, "valid", 2, device="cpu")
    sampled_ranking_topk(model, data, "valid", 2, n_negatives=2, device="cpu")
    assert model.training and model.seen_training_flags and not any(model.seen_training_flags)
    model.eval()
    full_ranking_topk(model, data, "valid", 2, device="cpu")
    assert not model.training


def all_interactions(user: int) -> set[int]:
    return {item for per_user in SPLITS.values() for item in per_user.get(user, [])}


def test_sampled_candidates_are_truth_plus_unseen_items_and_reproducible() -> None:
    data, model = make_data(), random_model()
    n_negatives = 3
    wide = 10  # more than truth + negatives, so every candidate is listed
    topk = sampled_ranking_topk(model, data, "test", wide, n_negatives=n_negatives, seed=7, device="cpu")
    assert topk.users.tolist() == [0, 1, 2]
    for row, user in enumerate(topk.users.tolist()):
        candidates = [i for i in topk.items[row].tolist() if i >= 0]
        truth = set(SPLITS["test"][user])
        negatives = set(candidates) - truth
        assert len(candidates) == len(set(candidates)) == len(truth) + n_negatives
        assert truth <= set(candidates)
        assert not negatives & all_interactions(user)
        scores = topk.scores[row, : len(candidates)]
        assert torch.all(scores[:-1] >= scores[1:])  # best first
    again = sampled_ranking_topk(model, data, "test", wide, n_negatives=n_negatives, seed=7, device="cpu")
    assert torch.equal(again.items, topk.items)
    others = [sampled_ranking_topk(model, data, "test", wide, n_negatives=n_negatives, seed=s, device="cpu").items
              for s in range(8, 12)]
    assert any(not torch.equal(other, topk.items) for other in others)


def test_sample_negatives_uniform_without_replacement() -> None:
    data = make_data()
    generator = torch.Generator().manual_seed(0)
    users = torch.zeros(4000, dtype=torch.long)  # user 0 has items 0..3: 8 free items
    negatives = sample_negatives(data, users, 2, generator)  # (4000, 2)
    assert (negatives[:, 0] != negatives[:, 1]).all()
    counts = torch.bincount(negatives.reshape(-1), minlength=N_ITEMS)
    assert counts[:4].tolist() == [0, 0, 0, 0]
    assert ((counts[4:] - 1000).abs() < 150).all(), counts  # 8000 draws over 8 items
    # few free items (8 <= 2 * 5): the other regime, still uniform and distinct
    five = sample_negatives(data, torch.zeros(1600, dtype=torch.long), 5, generator)  # (1600, 5)
    assert (five.sort(1).values[:, 1:] != five.sort(1).values[:, :-1]).all()
    counts = torch.bincount(five.reshape(-1), minlength=N_ITEMS)
    assert counts[:4].tolist() == [0, 0, 0, 0]
    assert ((counts[4:] - 1000).abs() < 150).all(), counts  # 8000 draws over 8 items
    # more negatives than free items: every free item once, then -1
    everything = sample_negatives(data, torch.tensor([1]), 10, generator)  # user 1 has 0, 4, 5, 6, 7
    assert sorted(i for i in everything[0].tolist() if i >= 0) == [1, 2, 3, 8, 9, 10, 11]
    assert everything[0].tolist().count(-1) == 3


def test_evaluate_ranking_metrics_hand_computed() -> None:
    data, model = make_data(), by_item_id_model()
    metrics, per_user, topk = evaluate_ranking(model, data, "valid", ks=(1, 5), item_chunk=5, device="cpu")
    # valid users 0, 1, 3 (user 2 has no valid item); train items masked; ranking by item id:
    #   user 0: 2 3 4 5 6, truth {2}    -> hit at rank 1
    #   user 1: 0 1 2 3 5, truth {5, 6} -> hit at rank 5 (6 is at rank 6)
    #   user 3: 0 1 2 3 4, truth {6}    -> no hit in the top 5 (6 is at rank 6)
    assert topk.items.tolist() == [[2, 3, 4, 5, 6], [0, 1, 2, 3, 5], [0, 1, 2, 3, 4]]
    expected = {
        "hr@1": 1 / 3, "hr@5": 2 / 3,
        "precision@1": 1 / 3, "precision@5": (1 / 5 + 1 / 5) / 3,
        "recall@1": 1 / 3, "recall@5": (1 + 1 / 2) / 3,
        "ndcg@1": 1 / 3, "ndcg@5": (1 + (1 / math.log2(6)) / (1 + 1 / math.log2(3))) / 3,
        "mrr@1": 1 / 3, "mrr@5": (1 + 1 / 5) / 3,
        # MAP@5: user 0: (1 / 1) * P@1; user 1: (1 / min(2, 5)) * P@5 = (1/2)(1/5)
        "map@1": 1 / 3, "map@5": (1 + 1 / 10) / 3,
        "coverage@1": 2 / N_ITEMS,  # {2, 0}
        "coverage@5": 7 / N_ITEMS,  # {0, ..., 6}
    }
    assert {name: metrics[name] for name in expected} == pytest.approx(expected)  # later metric files may add more
    built_in = ["user"] + [f"{m}@{k}" for k in (1, 5) for m in ("hr", "ndcg", "recall", "precision", "mrr", "map")]
    assert [column for column in per_user.columns if column in built_in] == built_in
    assert per_user["user"].tolist() == [0, 1, 3]
    assert per_user["mrr@5"].tolist() == pytest.approx([1, 1 / 5, 0])


def test_evaluate_ranking_sampled_and_bad_protocol() -> None:
    data, model = make_data(), by_item_id_model()
    metrics, per_user, topk = evaluate_ranking(model, data, "test", ks=(2,), protocol="sampled", n_negatives=4,
                                               seed=1, device="cpu")
    assert topk.k == 2 and len(per_user) == 3 and 0.0 <= metrics["ndcg@2"] <= 1.0
    # user 1's test truth {0, 7}: item 0 outranks every candidate, so it is at rank 1
    assert topk.items[1, 0].item() == 0 and per_user["hr@2"].iloc[1] == 1.0
    with pytest.raises(ValueError, match="sampled"):
        evaluate_ranking(model, data, "test", protocol="popular", device="cpu")


def test_evaluate_ranking_drops_users_without_truth() -> None:
    data, model = make_data(), by_item_id_model()
    _, per_user, topk = evaluate_ranking(model, data, "test", ks=(1,), users=torch.tensor([3, 0]), device="cpu")
    assert topk.users.tolist() == [0] and per_user["user"].tolist() == [0]


def test_topk_frame_long_format_without_padding() -> None:
    topk = TopK(users=torch.tensor([5, 2]), items=torch.tensor([[7, 1, -1], [3, -1, -1]]),
                scores=torch.tensor([[0.9, 0.5, float("-inf")], [0.3, float("-inf"), float("-inf")]]))
    frame = topk_frame(topk)
    assert list(frame.columns) == ["user", "rank", "item", "score"]
    assert frame["user"].tolist() == [5, 5, 2]
    assert frame["rank"].tolist() == [1, 2, 1]
    assert frame["item"].tolist() == [7, 1, 3]
    assert frame["score"].tolist() == pytest.approx([0.9, 0.5, 0.3])
    named = topk_frame(topk, user_ids=[f"u{i}" for i in range(6)])
    assert named["user"].tolist() == ["u5", "u5", "u2"]


def test_candidate_pool_ranks_only_its_items_with_the_same_order_as_full_ranking():
    """Ranking over an item pool equals the full ranking with every other item removed."""
    data = _pool_data()
    model = _pool_model(data)
    pool = torch.tensor([7, 2, 5, 9, 3])
    for chunk in (1, 2, 100):
        pooled = full_ranking_topk(model, data, "test", 3, item_chunk=chunk, candidates=pool)
        assert set(pooled.items[pooled.items >= 0].tolist()) <= set(pool.tolist())
        everything = full_ranking_topk(model, data, "test", data.n_items)
        for row in range(len(pooled.users)):
            kept = [i for i in everything.items[row].tolist() if i in set(pool.tolist())][:3]
            assert pooled.items[row].tolist()[:len(kept)] == kept


def _pool_data():
    import pandas as pd

    from recdistill.data.ranking_data import RankingData

    rows = [(s, u, i, t) for t, (s, u, i) in enumerate(
        [("train", 0, 2), ("train", 0, 4), ("train", 1, 5), ("train", 1, 6), ("valid", 0, 1), ("valid", 1, 0),
         ("test", 0, 7), ("test", 1, 9)])]
    frame = pd.DataFrame(rows, columns=["split", "user", "item", "timestamp"]).assign(row=range(len(rows)))
    frames = {n: frame[frame.split == n].drop(columns="split") for n in ("train", "valid", "test")}
    return RankingData(frames, n_users=2, n_items=10, max_length=4)


def _pool_model(data):
    from recdistill.models.bpr_mf import BPRMF, BPRMFConfig
    from recdistill.models.ranking_base import RankingShape

    torch.manual_seed(3)
    return BPRMF(BPRMFConfig(dim=4), RankingShape(n_users=2, n_items=10, max_length=4))
