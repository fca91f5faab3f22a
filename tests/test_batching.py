"""Model inputs: each target reads only the same user's earlier visible interactions."""

import pandas as pd
import torch

from recdistill.data.batching import build_split_data


def frame(rows):
    return pd.DataFrame(rows, columns=["row", "user", "item", "rating", "timestamp"]).astype({"rating": "float32"})


def splits():
    # user 0: items 10,11,12 (train, t=1,2,3), 13 (valid, t=4), 14 (test, t=5); user 1: 20 train, 21 test
    train = frame([(0, 0, 10, 5, 1), (1, 0, 11, 4, 2), (2, 0, 12, 3, 3), (5, 1, 20, 2, 1)])
    valid = frame([(3, 0, 13, 1, 4)])
    test = frame([(4, 0, 14, 2, 5), (6, 1, 21, 5, 9)])
    return {"train": train, "valid": valid, "test": test}


def test_windows_follow_the_visibility_protocol():
    _, windows = build_split_data(splits(), history_length=3)
    train = windows["train"].batch(torch.arange(4))
    # train row 2 (item 12) reads items 10, 11 (ids + 1), left-padded; then the target slot. No row of
    # this batch reads 3 items, so the history column none reads is dropped
    assert train["seq_items"][2].tolist() == [11, 12, 13]
    assert train["seq_ratings"][2].tolist() == [5, 4, 0]  # the target's own rating is never input
    assert train["seq_visible"][2].tolist() == [True, True, False]
    assert train["seq_target"][2].tolist() == [False, False, True]
    assert train["seq_visible"][0].tolist() == [False] * 3  # the first interaction reads nothing
    assert windows["train"].batch(torch.arange(1))["seq_items"].tolist() == [[11]]  # reads nothing: no history

    valid = windows["valid"].batch(torch.arange(1))
    assert valid["seq_items"][0].tolist() == [11, 12, 13, 14]  # all of user 0's train items

    test = windows["test"].batch(torch.arange(2))
    assert test["seq_items"][0].tolist() == [12, 13, 14, 15]  # last 3 of train + valid, before t=5
    assert test["seq_ratings"][0].tolist() == [4, 3, 1, 0]
    assert test["seq_items"][1].tolist() == [0, 0, 21, 22]  # user 1 reads only its own train item 20
    assert test["label"].tolist() == [1, 4]


def test_no_test_rating_is_ever_readable():
    data = splits()
    train, windows = build_split_data(data, history_length=8)
    test_items = set((data["test"]["item"] + 1).tolist())
    batches = [windows[s].batch(torch.arange(len(windows[s]))) for s in windows] + list(train.batches(100))
    for batch in batches:
        readable = set(batch["seq_items"][batch["seq_visible"]].tolist())
        assert not readable & test_items


def test_training_chunks_hold_each_training_row_once_per_epoch_in_time_order():
    data = splits()
    train, _ = build_split_data(data, history_length=1)  # chunks of 2 slots
    for epoch in (0, 1):
        batches = list(train.batches(4, generator=torch.Generator().manual_seed(epoch), epoch=epoch))
        index = torch.cat([b["index"] for b in batches])
        assert sorted(index.tolist()) == [0, 1, 2, 3]
        for batch in batches:
            items = batch["seq_items"]
            assert torch.equal(batch["seq_target"], items > 0) and torch.equal(batch["seq_visible"], items > 0)
            # labels follow the slots in row-major order
            assert torch.equal(batch["item"] + 1, items[items > 0])
    # epoch 1 shifts chunk boundaries by one slot: user 0's items 10 | 11, 12 instead of 10, 11 | 12;
    # rows are left-aligned, the padding after the chunk
    rows = [b["seq_items"].tolist() for b in train.batches(100, epoch=1)][0]
    assert [11, 0] in rows and [12, 13] in rows


def test_training_batches_hold_about_batch_size_targets_and_no_padding_column():
    data = splits()
    train, _ = build_split_data(data, history_length=7)  # chunks of up to 8 slots; this data's are shorter
    for batch_size in (1, 2, 3, 100):
        batches = list(train.batches(batch_size, generator=torch.Generator().manual_seed(0)))
        assert sorted(torch.cat([b["index"] for b in batches]).tolist()) == list(range(len(train)))
        for batch in batches:
            filled = batch["seq_target"]
            assert filled[:, 0].all() and filled[:, -1].any()  # left-aligned, as wide as the longest chunk
            assert int(filled.sum()) < batch_size + filled.sum(1).max()  # batch_size give or take one chunk
        if batch_size == 1:
            assert all(len(b["seq_target"]) == 1 for b in batches)  # a chunk each


def test_user_rows_only_when_no_visible_interaction_falls_between_targets():
    from recdistill.data.batching import build_user_rows

    _, windows = build_split_data(splits(), history_length=3)
    rows = build_user_rows(windows["test"])
    assert rows is not None
    batch = next(rows.batches(10))
    # user 0: history 12, 13, 14 then target 15; user 1: history 21 then target 22
    assert batch["seq_items"].tolist() == [[12, 13, 14, 15], [0, 0, 21, 22]]
    assert batch["seq_target"][:, -1].all() and not batch["seq_visible"][:, -1].any()

    interleaved = splits()
    interleaved["train"].loc[interleaved["train"]["item"] == 12, "timestamp"] = 6  # train after a test target
    interleaved["test"] = pd.concat([interleaved["test"], frame([(7, 0, 15, 3, 7)])])
    _, windows = build_split_data(interleaved, history_length=3)
    assert build_user_rows(windows["test"]) is None
