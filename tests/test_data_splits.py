"""Splits: no leakage, expected sizes, determinism, every row in exactly one part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recdistill.data.split_config import ChronoRatioSplit, LeaveOneOutSplit, RandomRatioSplit
from recdistill.data.splits import Split, load_split, make_split, save_split, split_key
from recdistill.errors import ConfigError, DataError

#: Dataset configs as plain records: split_key reads only the keys that determine the data.
MOVIELENS = {"name": "movielens_100k", "cache_dir": "~/.cache/recdistill", "min_user_interactions": 5}
SYNTHETIC = {"name": "synthetic", "cache_dir": "~/.cache/recdistill", "min_user_interactions": 5,
             "synthetic": {"n_users": 300, "n_items": 200, "interactions_per_user": 40, "n_factors": 8,
                           "popularity_skew": 1.0, "noise": 0.5}}


@pytest.fixture
def interactions() -> pd.DataFrame:
    """Users with 1, 2, 3, 10 and 25 interactions, shuffled rows, some tied timestamps."""
    rng = np.random.default_rng(0)
    sizes = {0: 1, 1: 2, 2: 3, 3: 10, 4: 25}
    user = np.repeat(list(sizes), list(sizes.values()))
    frame = pd.DataFrame({"user": user.astype(np.int64), "item": rng.integers(0, 30, len(user)),
                          "rating": rng.integers(1, 6, len(user)).astype(np.float32),
                          "timestamp": rng.integers(0, 8, len(user)).astype(np.int64) * 100})
    return frame.sample(frac=1, random_state=1).reset_index(drop=True)


def _parts(split: Split) -> list[pd.DataFrame]:
    return [split.train, split.valid, split.test]


def _assert_partition(split: Split, interactions: pd.DataFrame) -> None:
    rows = np.concatenate([p["row"].to_numpy() for p in _parts(split)])
    assert np.array_equal(np.sort(rows), np.arange(len(interactions)))  # each row exactly once
    for part in _parts(split):  # rows carry their original values
        original = interactions.iloc[part["row"].to_numpy()].reset_index(drop=True)
        pd.testing.assert_frame_equal(part.drop(columns="row"), original)


def _assert_no_leakage(split: Split) -> None:
    """Per user: train ends no later than valid starts, valid no later than test starts."""
    last_train = split.train.groupby("user")["timestamp"].max()
    first_valid, last_valid = (split.valid.groupby("user")["timestamp"].agg(f) for f in ("min", "max"))
    first_test = split.test.groupby("user")["timestamp"].min()
    assert (first_valid >= last_train.reindex(first_valid.index)).all()
    assert (first_test >= last_valid.reindex(first_test.index)).all()
    assert (first_test >= last_train.reindex(first_test.index)).all()


def _sizes_per_user(split: Split) -> pd.DataFrame:
    return pd.DataFrame({name: p.groupby("user").size() for name, p in
                         zip(("train", "valid", "test"), _parts(split))}).fillna(0).astype(int)


def test_chrono_ratio_sizes_and_order(interactions: pd.DataFrame) -> None:
    split = make_split(interactions, ChronoRatioSplit(), seed=0)
    _assert_partition(split, interactions)
    _assert_no_leakage(split)
    sizes = _sizes_per_user(split)
    assert sizes.loc[0].tolist() == [1, 0, 0] and sizes.loc[1].tolist() == [2, 0, 0]  # < 3: all train
    assert sizes.loc[2].tolist() == [1, 1, 1]
    assert sizes.loc[3].tolist() == [8, 1, 1]
    assert sizes.loc[4].tolist() == [19, 3, 3]  # 25 * 0.1 = 2.5 rounds half up to 3
    assert list(split.train.columns) == ["user", "item", "rating", "timestamp", "row"]


def test_chrono_ties_follow_row_order() -> None:
    frame = pd.DataFrame({"user": [0] * 4, "item": [0, 1, 2, 3], "rating": [1.0] * 4, "timestamp": [5, 5, 5, 5]})
    split = make_split(frame, ChronoRatioSplit(ratios=[0.5, 0.25, 0.25]), seed=0)
    assert split.train["row"].tolist() == [0, 1] and split.valid["row"].tolist() == [2]
    assert split.test["row"].tolist() == [3]


def test_leave_one_out(interactions: pd.DataFrame) -> None:
    split = make_split(interactions, LeaveOneOutSplit(), seed=0)
    _assert_partition(split, interactions)
    _assert_no_leakage(split)
    sizes = _sizes_per_user(split)
    assert sizes["test"].tolist() == [0, 0, 1, 1, 1] and sizes["valid"].tolist() == [0, 0, 1, 1, 1]
    assert sizes["train"].tolist() == [1, 2, 1, 8, 23]


def test_random_ratio_is_seeded(interactions: pd.DataFrame) -> None:
    cfg = RandomRatioSplit(ratios=[0.6, 0.2, 0.2])
    split = make_split(interactions, cfg, seed=3)
    _assert_partition(split, interactions)
    assert split.sizes() == {"train": 25, "valid": 8, "test": 8}
    again, other = make_split(interactions, cfg, seed=3), make_split(interactions, cfg, seed=4)
    assert again.test["row"].tolist() == split.test["row"].tolist()
    assert other.test["row"].tolist() != split.test["row"].tolist()


def test_chronological_splits_are_deterministic(interactions: pd.DataFrame) -> None:
    a = make_split(interactions, ChronoRatioSplit(), seed=0)
    b = make_split(interactions, ChronoRatioSplit(), seed=99)
    for x, y in zip(_parts(a), _parts(b)):
        pd.testing.assert_frame_equal(x, y)


def test_zero_valid_ratio_gives_empty_valid(interactions: pd.DataFrame) -> None:
    split = make_split(interactions, ChronoRatioSplit(ratios=[0.9, 0.0, 0.1]), seed=0)
    assert len(split.valid) == 0 and _sizes_per_user(split).loc[4, "test"] == 3
    _assert_partition(split, interactions)


@pytest.mark.parametrize("cfg, match", [
    ({"name": "by_week"}, "chrono_ratio, leave_one_out, random_ratio"),
    (ChronoRatioSplit(ratios=[0.8, 0.1]), "split.ratios"),
    (ChronoRatioSplit(ratios=[0.8, 0.3, 0.1]), "sum to 1"),
    (RandomRatioSplit(ratios=[1.1, -0.1, 0.0]), "non-negative"),
    ({"name": "chrono_ratio", "support_size": 3}, "split.support_size is not a key of a chrono_ratio split"),
    ({"name": "leave_one_out", "ratios": [0.8, 0.1, 0.1]}, "split.ratios is not a key of a leave_one_out split"),
    ({"name": "chrono_ratio", "ratios": ["a", 0.1, 0.1]}, "ratios"),
    (ChronoRatioSplit(name="leave_one_out"), "does not match the chrono_ratio split's schema"),
])
def test_bad_configs_are_rejected(interactions: pd.DataFrame, cfg: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_split(interactions, cfg, seed=0)


def test_save_and_load_round_trip(tmp_path: Path, interactions: pd.DataFrame) -> None:
    split = make_split(interactions, ChronoRatioSplit(), seed=0)
    save_split(split, tmp_path / "split")
    loaded = load_split(tmp_path / "split")
    for x, y in zip(_parts(split), _parts(loaded)):
        pd.testing.assert_frame_equal(x, y)


def test_incomplete_saved_split_is_rejected(tmp_path: Path, interactions: pd.DataFrame) -> None:
    split = make_split(interactions, ChronoRatioSplit(), seed=0)
    save_split(split, tmp_path)
    (tmp_path / "split.json").unlink()
    with pytest.raises(DataError, match="no complete saved split"):
        load_split(tmp_path)
    save_split(split, tmp_path)
    split.test.iloc[:1].to_parquet(tmp_path / "test.parquet")
    with pytest.raises(DataError, match="do not match"):
        load_split(tmp_path)


def test_split_key_depends_only_on_what_determines_the_split() -> None:
    chrono = ChronoRatioSplit()
    key = split_key(MOVIELENS, chrono, seed=0)
    assert len(key) == 16 and int(key, 16) >= 0
    assert split_key({**MOVIELENS, "cache_dir": "/elsewhere", "source": "recbole"}, chrono, seed=1) == key
    assert split_key({**MOVIELENS, "min_user_interactions": 10}, chrono, seed=0) != key
    assert split_key(MOVIELENS, ChronoRatioSplit(ratios=[0.7, 0.1, 0.2]), seed=0) != key
    assert split_key(MOVIELENS, LeaveOneOutSplit(), 0) == split_key(MOVIELENS, LeaveOneOutSplit(), 1)
    random = RandomRatioSplit()
    assert split_key(MOVIELENS, random, seed=0) != split_key(MOVIELENS, random, seed=1)
    assert split_key(SYNTHETIC, chrono, 0) != split_key(SYNTHETIC, chrono, 1)
    bigger = {**SYNTHETIC, "synthetic": {**SYNTHETIC["synthetic"], "n_users": 500}}
    assert split_key(bigger, chrono, 0) != split_key(SYNTHETIC, chrono, 0)


def test_split_key_and_make_split_accept_omegaconf_and_mappings(interactions: pd.DataFrame) -> None:
    omegaconf = pytest.importorskip("omegaconf")
    data = omegaconf.OmegaConf.create(MOVIELENS)
    typed = omegaconf.OmegaConf.structured(RandomRatioSplit(ratios=[0.6, 0.2, 0.2]))
    untyped = omegaconf.OmegaConf.create({"name": "random_ratio", "ratios": [0.6, 0.2, 0.2]})
    reference = RandomRatioSplit(ratios=[0.6, 0.2, 0.2])
    assert split_key(data, typed, 0) == split_key(MOVIELENS, reference, 0) == split_key(data, untyped, 0)
    assert split_key(data, {"name": "random_ratio", "ratios": [0.6, 0.2, 0.2]}, 0) == split_key(data, typed, 0)
    expected = make_split(interactions, reference, seed=3)
    for cfg in (typed, untyped, {"name": "random_ratio", "ratios": [0.6, 0.2, 0.2]}):
        for x, y in zip(_parts(expected), _parts(make_split(interactions, cfg, seed=3))):
            pd.testing.assert_frame_equal(x, y)
