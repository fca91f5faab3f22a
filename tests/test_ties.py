"""The tie rule: ranking metrics cannot depend on how users and items are numbered.

The same interactions are numbered three ways (raw-id order, reversed, shuffled); a model whose
scores are defined on raw ids, with many ties, must give every user the same list of raw ids, the
same per-user metrics and the same teacher top-K knowledge under full and sampled ranking. A model
whose scores all tie must score like the random baseline in expectation over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recdistill.data.ranking_data import RankingData
from recdistill.data.tie_keys import TieKeys
from recdistill.distill.extract import per_user_knowledge
from recdistill.evaluation.ranking_eval import evaluate_ranking
from recdistill.models.popularity import Popularity, PopularityConfig
from recdistill.models.ranking_base import RankingShape
from tests.test_ranking_eval import TableModel

N_USERS, N_ITEMS = 40, 25
USERS = np.array([f"user-{n:02d}" for n in range(N_USERS)])
ITEMS = np.array([f"{n}" for n in range(N_ITEMS)])  # numeric-looking raw ids, as in MovieLens


def raw_splits() -> dict[str, pd.DataFrame]:
    """Per user 3-6 training items, one validation and one test item, in raw ids."""
    rng = np.random.default_rng(0)
    rows = []
    for user in USERS:
        items = rng.choice(ITEMS, size=rng.integers(5, 9), replace=False)
        for t, item in enumerate(items):
            split = "test" if t == len(items) - 1 else "valid" if t == len(items) - 2 else "train"
            rows.append((split, user, item, t))
    return {name: pd.DataFrame([r[1:] for r in rows if r[0] == name], columns=["user", "item", "timestamp"])
            for name in ("train", "valid", "test")}


def numbered(user_ids: np.ndarray, item_ids: np.ndarray, seed: int = 0) -> RankingData:
    """The raw splits with internal id k standing for user_ids[k] / item_ids[k]."""
    user_code = {raw: k for k, raw in enumerate(user_ids)}
    item_code = {raw: k for k, raw in enumerate(item_ids)}
    frames = {name: frame.assign(user=frame["user"].map(user_code), item=frame["item"].map(item_code))
              for name, frame in raw_splits().items()}
    return RankingData(frames, N_USERS, N_ITEMS, max_length=4, ties=TieKeys(seed, user_ids, item_ids))


def raw_scores() -> dict[tuple[str, str], float]:
    """A score per (raw user, raw item) from {0, 1, 2}: ties at every cut."""
    rng = np.random.default_rng(1)
    values = rng.integers(0, 3, size=(N_USERS, N_ITEMS)).astype(float)
    return {(u, i): values[a, b] for a, u in enumerate(USERS) for b, i in enumerate(ITEMS)}


def table_model(user_ids: np.ndarray, item_ids: np.ndarray) -> TableModel:
    scores = raw_scores()
    return TableModel(torch.tensor([[scores[u, i] for i in item_ids] for u in user_ids]))


NUMBERINGS = {
    "raw order": (USERS, ITEMS),
    "reversed": (USERS[::-1].copy(), ITEMS[::-1].copy()),
    "shuffled": (USERS[np.random.default_rng(2).permutation(N_USERS)],
                 ITEMS[np.random.default_rng(3).permutation(N_ITEMS)]),
}


def lists_by_raw_id(data: RankingData, topk, user_ids: np.ndarray, item_ids: np.ndarray) -> dict[str, list[str]]:
    return {user_ids[u]: [item_ids[i] if i >= 0 else "-" for i in row]
            for u, row in zip(topk.users.tolist(), topk.items.tolist())}


@pytest.mark.parametrize("protocol,mask_history,item_chunk", [("full", True, 4), ("full", False, 100),
                                                              ("sampled", True, 100)])
def test_metrics_do_not_depend_on_the_numbering(protocol: str, mask_history: bool, item_chunk: int) -> None:
    results = {}
    for name, (user_ids, item_ids) in NUMBERINGS.items():
        data, model = numbered(user_ids, item_ids, seed=7), table_model(user_ids, item_ids)
        metrics, per_user, topk = evaluate_ranking(model, data, "test", ks=(1, 3, 5), protocol=protocol,
                                                   mask_history=mask_history, n_negatives=6, seed=7,
                                                   batch_size=7, item_chunk=item_chunk, device="cpu")
        per_user = per_user.assign(user=user_ids[per_user["user"]]).set_index("user").sort_index()
        results[name] = (metrics, per_user, lists_by_raw_id(data, topk, user_ids, item_ids), topk.tied_users)
    metrics, per_user, lists, tied = results["raw order"]
    assert tied > N_USERS // 2  # the tie rule decides most users' metrics here: the test has teeth
    for name in ("reversed", "shuffled"):
        other_metrics, other_per_user, other_lists, other_tied = results[name]
        assert other_lists == lists, name
        pd.testing.assert_frame_equal(other_per_user, per_user, check_exact=True)
        assert other_metrics == pytest.approx(metrics, abs=1e-12), name  # means summed in another user order
        assert other_tied == tied


def test_teacher_topk_knowledge_does_not_depend_on_the_numbering() -> None:
    knowledge = {}
    for name, (user_ids, item_ids) in NUMBERINGS.items():
        data, model = numbered(user_ids, item_ids, seed=3), table_model(user_ids, item_ids)
        tensors = per_user_knowledge(model, data, frozenset({"topk_items"}), 6, batch_size=5, item_chunk=4,
                                     device=torch.device("cpu"))
        knowledge[name] = {user_ids[u]: [item_ids[i] for i in row]
                           for u, row in enumerate(tensors["topk_items"].tolist())}
    assert knowledge["reversed"] == knowledge["raw order"]
    assert knowledge["shuffled"] == knowledge["raw order"]


def test_all_equal_scores_score_like_random_in_expectation() -> None:
    """Popularity on data where every item has the same training count: every score ties. HR@5 over
    seeds averages to the exact random expectation, 5 / (unmasked items), under either numbering."""
    frames = {"train": pd.DataFrame({"user": np.repeat(np.arange(N_ITEMS), 2),
                                     "item": np.arange(2 * N_ITEMS) % N_ITEMS, "timestamp": 0}),
              "valid": pd.DataFrame({"user": np.arange(N_ITEMS), "item": (np.arange(N_ITEMS) + 5) % N_ITEMS,
                                     "timestamp": 1}),
              "test": pd.DataFrame({"user": np.arange(N_ITEMS), "item": (np.arange(N_ITEMS) + 9) % N_ITEMS,
                                    "timestamp": 2})}
    shape = RankingShape(n_users=N_ITEMS, n_items=N_ITEMS, max_length=4)
    expected = 5 / (N_ITEMS - 3)  # each user has 2 training + 1 validation item masked from the test ranking
    for item_ids in (ITEMS, ITEMS[::-1].copy()):
        per_seed = []
        for seed in range(120):
            data = RankingData(frames, N_ITEMS, N_ITEMS, 4, TieKeys(seed, USERS[:N_ITEMS], item_ids))
            model = Popularity(PopularityConfig(), shape)
            model.fit(data.lists["train"])
            metrics, _, topk = evaluate_ranking(model, data, "test", ks=(5,), device="cpu")
            assert topk.tied_users == N_ITEMS
            per_seed.append(metrics["hr@5"])
        mean, error = np.mean(per_seed), np.std(per_seed) / np.sqrt(len(per_seed))
        assert abs(mean - expected) < 4 * error, (mean, expected, error)
        assert np.std(per_seed) > 0  # each seed orders the ties anew


def test_no_ties_no_tied_users() -> None:
    user_ids, item_ids = NUMBERINGS["raw order"]
    data = numbered(user_ids, item_ids)
    distinct = TableModel(torch.randperm(N_USERS * N_ITEMS, generator=torch.Generator().manual_seed(0))
                          .view(N_USERS, N_ITEMS).float())
    _, _, topk = evaluate_ranking(distinct, data, "test", ks=(5,), device="cpu")
    assert topk.tied_users == 0


def test_pair_keys_are_splitmix64_with_wrapping_int64_arithmetic():
    """Checked against a pure-Python SplitMix64 finalizer on unbounded integers taken modulo 2**64."""
    from recdistill.data.tie_keys import mix64, raw_id_hashes

    mask = (1 << 64) - 1

    def reference(x: int) -> int:
        x &= mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        x ^= x >> 31
        return x - (1 << 64) if x >= 1 << 63 else x

    values = [0, 1, -1, 2**62, -(2**63), 123456789123, 2**63 - 1]
    assert mix64(torch.tensor(values)).tolist() == [reference(v) for v in values]
    hashes = raw_id_hashes(["005", "5", "5"]).tolist()
    assert hashes[0] != hashes[1] and hashes[1] == hashes[2]  # ids are text: "005" and "5" differ
