"""Ranking inputs: per-user lists, the input protocol, and training batches that cover each
training transition exactly once per epoch."""

import numpy as np
import pandas as pd
import pytest
import torch

from recdistill.data.split_config import LeaveOneOutSplit
from recdistill.data.ranking_data import InteractionLists, RankingData
from recdistill.data.splits import make_split


def frames_from(rows):
    """Frames train/valid/test from (split, user, item, timestamp) tuples."""
    frame = pd.DataFrame(rows, columns=["split", "user", "item", "timestamp"])
    frame["row"] = np.arange(len(frame))
    return {name: frame[frame["split"] == name].drop(columns="split") for name in ("train", "valid", "test")}


@pytest.fixture
def data():
    rows = [("train", 0, i, t) for t, i in enumerate([1, 2, 3, 4, 5])]
    rows += [("train", 1, 6, 1), ("train", 1, 7, 2), ("train", 2, 8, 1)]
    rows += [("valid", 0, 9, 9), ("valid", 1, 0, 9), ("test", 0, 7, 10), ("test", 1, 8, 10)]
    return RankingData(frames_from(rows), n_users=4, n_items=10, max_length=3)


def test_lists_are_time_ordered_per_user():
    frame = pd.DataFrame({"user": [1, 0, 1, 0], "item": [5, 6, 7, 8], "timestamp": [3, 2, 1, 1], "row": range(4)})
    lists = InteractionLists.from_frame(frame, n_users=3)
    assert lists.indptr.tolist() == [0, 2, 4, 4]
    assert lists.items.tolist() == [8, 6, 7, 5]
    row, item = lists.flat(torch.tensor([1, 2, 0]))
    assert row.tolist() == [0, 0, 2, 2] and item.tolist() == [7, 5, 8, 6]


def test_inputs_follow_the_protocol(data):
    """valid reads train; test reads train then valid; nobody reads a test interaction."""
    users = torch.tensor([0, 1, 2, 3])
    assert data.user_batch(users, "valid")["seq"].tolist() == [[4, 5, 6], [0, 7, 8], [0, 0, 9], [0, 0, 0]]
    assert data.user_batch(users, "test")["seq"].tolist() == [[5, 6, 10], [7, 8, 1], [0, 0, 9], [0, 0, 0]]
    row, item = data.history(users, "test")
    test = data.targets("test")
    for u in (0, 1):
        truth = set(test.items[test.indptr[u]:test.indptr[u + 1]].tolist())
        assert truth.isdisjoint(item[row == u].tolist())
    assert data.eval_users("test").tolist() == [0, 1]


def test_leave_one_out_inputs_never_hold_a_test_item():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(0, 30, 600), "item": rng.integers(0, 50, 600),
                          "rating": 3.0, "timestamp": rng.integers(0, 10_000, 600)})
    split = make_split(frame, LeaveOneOutSplit(), seed=0)
    data = RankingData({"train": split.train, "valid": split.valid, "test": split.test}, 30, 50, 8)
    test_rows = set(split.test["row"])
    for name in ("valid", "test"):
        row, item = data.history(torch.arange(30), name)
        frame_rows = pd.concat([split.train, split.valid]) if name == "test" else split.train
        assert len(row) == len(frame_rows) and not test_rows & set(frame_rows["row"])


@pytest.mark.parametrize("epoch", [0, 1, 2, 3])
def test_sequence_rows_predict_each_transition_once(data, epoch):
    batches = data.training_batches("sequences", batch_size=3)
    seen = []
    finals = {}
    for batch in batches.batches(None, "cpu", torch.Generator().manual_seed(epoch), epoch):
        seq, target = batch["seq"], batch["target"]
        for b in range(len(seq)):
            for slot in torch.nonzero(target[b]).squeeze(1).tolist():
                seen.append((int(batch["user"][b]), int(seq[b, slot]) - 1, int(target[b, slot]) - 1))
            if batch["final"][b]:
                finals[int(batch["user"][b])] = seq[b].tolist()
        assert int(batch["n_targets"]) == int((target > 0).sum())
    expected = [(0, a, a + 1) for a in (1, 2, 3, 4)] + [(1, 6, 7)]
    assert sorted(seen) == sorted(expected)
    assert len(batches) == len(expected)
    # the final row of each user ends at their last training item (what extraction reads)
    assert finals == {0: [4, 5, 6], 1: [0, 7, 8], 2: [0, 0, 9]}


def test_pair_negatives_avoid_training_items(data):
    batches = data.training_batches("pairs", batch_size=4, n_negatives=5)
    rows = list(batches.batches(None, "cpu", torch.Generator().manual_seed(0)))
    users = torch.cat([b["user"] for b in rows])
    positives = torch.cat([b["pos"] for b in rows])
    negatives = torch.cat([b["neg"] for b in rows])
    assert len(users) == 8 and negatives.shape == (8, 5)
    train = data.lists["train"]
    for u, pos, neg in zip(users.tolist(), positives.tolist(), negatives.tolist()):
        mine = set(train.items[train.indptr[u]:train.indptr[u + 1]].tolist())
        assert pos in mine and mine.isdisjoint(neg)


@pytest.mark.parametrize("epoch", [0, 1])
def test_overlapping_rows_give_every_target_context_and_still_count_it_once(epoch):
    rows = [("train", 0, i, i) for i in range(11)] + [("valid", 0, 11, 20), ("test", 0, 12, 21)]
    data = RankingData(frames_from(rows), n_users=1, n_items=13, max_length=4)
    batches = data.training_batches("sequences", batch_size=8, stride=2)
    seen = []
    for batch in batches.batches(None, "cpu", torch.Generator().manual_seed(0), epoch):
        for b in range(len(batch["seq"])):
            for slot in torch.nonzero(batch["target"][b]).squeeze(1).tolist():
                item = int(batch["seq"][b, slot]) - 1
                seen.append(item)
                if item >= 2:  # beyond the user's first stride: at least L - stride earlier items readable
                    assert (batch["seq"][b, :slot] > 0).sum() >= 2
    assert sorted(seen) == list(range(10))
