"""Model inputs: each target reads only the same user's earlier visible interactions."""

import pandas as pd
import torch

from recdistill.data.batching import build_split_examples


def frame(rows):
    return pd.DataFrame(rows, columns=["row", "user", "item", "rating", "timestamp"]).astype(
        {"rating": "float32"}
    )


def test_histories_follow_the_visibility_protocol():
    # user 0: items 10,11,12 (train, t=1,2,3), 13 (valid, t=4), 14 (test, t=5); user 1: item 20 train, 21 test
    train = frame([(0, 0, 10, 5, 1), (1, 0, 11, 4, 2), (2, 0, 12, 3, 3), (5, 1, 20, 2, 1)])
    valid = frame([(3, 0, 13, 1, 4)])
    test = frame([(4, 0, 14, 2, 5), (6, 1, 21, 5, 9)])
    examples = build_split_examples({"train": train, "valid": valid, "test": test}, history_length=3)

    tr = examples["train"].tensors
    # train row 2 (item 12) sees items 10, 11 (ids + 1), left-padded; its own rating is never input
    assert tr["hist_items"][2].tolist() == [0, 11, 12]
    assert tr["hist_ratings"][2].tolist() == [0, 5, 4]
    assert tr["hist_mask"][0].tolist() == [False, False, False]  # the first interaction sees nothing

    va = examples["valid"].tensors
    assert va["hist_items"][0].tolist() == [11, 12, 13]  # all of user 0's train items

    te = examples["test"].tensors
    assert te["hist_items"][0].tolist() == [12, 13, 14]  # last 3 of train + valid, before t=5
    assert te["hist_ratings"][0].tolist() == [4, 3, 1]
    assert te["hist_items"][1].tolist() == [0, 0, 21]  # user 1 sees only its own train item 20
    assert te["label"].tolist() == [1, 4]


def test_no_test_rating_is_ever_read_as_input():
    train = frame([(0, 0, 1, 3, 1), (1, 0, 2, 3, 2)])
    valid = frame([(2, 0, 3, 3, 3)])
    test = frame([(3, 0, 4, 5, 4), (4, 0, 5, 1, 5)])
    examples = build_split_examples({"train": train, "valid": valid, "test": test}, history_length=8)
    test_items = {5, 6}  # test item ids + 1
    for split in ("train", "valid", "test"):
        seen = set(examples[split].tensors["hist_items"].flatten().tolist())
        assert not seen & test_items, f"{split} inputs contain a test interaction"


def test_batches_cover_every_row_once_when_shuffled():
    train = frame([(i, i % 3, i, 1 + i % 5, i) for i in range(10)])
    examples = build_split_examples({"train": train, "valid": train.iloc[:0], "test": train.iloc[:0]}, 4)
    generator = torch.Generator().manual_seed(0)
    seen = torch.cat([b["index"] for b in examples["train"].batches(3, generator=generator)])
    assert sorted(seen.tolist()) == list(range(10))
    assert seen.tolist() != list(range(10))
