"""Cold-user, cold-item and cross-domain splits: no leakage, comparable across k and fractions, keyed, saved."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recdistill.data.split_config import (ChronoRatioSplit, ColdItemSplit, ColdUserSplit, DomainGenreSplit,
                                          DomainTimeSplit, LeaveOneOutSplit, RandomRatioSplit, to_split_config)
from recdistill.data.splits import Split, load_split, make_split, save_split, split_key
from recdistill.data.synthetic import SyntheticConfig, generate_synthetic
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError, DataError

COLD_USER = ColdUserSplit(support_size=3, max_support=5, min_query=3)
COLD_ITEM = ColdItemSplit()
GENRES = ["Mystery", "Drama"]
DOMAIN = DomainGenreSplit(target_genres=GENRES)
MOVIELENS = {"name": "movielens_100k", "cache_dir": "~/.cache/recdistill", "min_user_interactions": 5}
#: A record of the flat split schema used before per-kind schemas (every kind's fields), as old runs wrote it.
FLAT = {"name": "chrono_ratio", "ratios": [0.8, 0.1, 0.1], "support_size": 10, "max_support": 10, "min_query": 5,
        "valid_users": 0.1, "test_users": 0.2, "valid_items": 0.1, "test_items": 0.2, "min_item_interactions": 1,
        "domain_by": "genre", "target_genres": [], "time_quantile": 0.8, "target_fraction": 1.0}


@pytest.fixture(scope="module")
def data() -> RecData:
    """80 users, 60 items with genres, about 20 interactions per user."""
    return generate_synthetic(SyntheticConfig(n_users=80, n_items=60, interactions_per_user=20), seed=0)


def _rows(*tables: pd.DataFrame) -> set[int]:
    return set(np.concatenate([t["row"].to_numpy() for t in tables]).tolist())


def _users(table: pd.DataFrame) -> set[int]:
    return set(table["user"].tolist())


def test_cold_user_keeps_held_out_users_out_of_source_and_query_out_of_train(data: RecData) -> None:
    split = make_split(data.interactions, COLD_USER, seed=0)
    source, pool = split.extra["source"], split.extra["support_pool"]
    cold = _users(split.valid) | _users(split.test)
    assert not _users(split.valid) & _users(split.test) and not cold & _users(source)
    assert _users(split.train) == cold == _users(pool)
    assert _rows(split.train) <= _rows(pool) and not _rows(pool) & _rows(split.valid, split.test)
    counts = data.interactions.groupby("user").size()
    eligible = set(counts.index[counts >= 8].tolist())
    assert _users(source) | cold == eligible  # users under max_support + min_query are dropped
    assert _rows(source, pool, split.valid, split.test) == set(
        np.flatnonzero(data.interactions["user"].isin(eligible)).tolist())
    assert (pool.groupby("user").size() == 5).all() and (split.train.groupby("user").size() == 3).all()
    query = pd.concat([split.valid, split.test])
    last_support = pool.groupby("user")["timestamp"].max()
    assert (query.groupby("user")["timestamp"].min() > last_support.reindex(_sorted(query))).all()
    assert sorted(pool.groupby("user")["position"].apply(list).iloc[0]) == [0, 1, 2, 3, 4]
    assert len(_users(split.test)) == round(len(eligible) * 0.2)
    assert list(split.train.columns) == ["user", "item", "rating", "timestamp", "row"]


def _sorted(table: pd.DataFrame) -> list[int]:
    return sorted(_users(table))


def test_cold_user_query_is_the_same_for_every_k_and_supports_nest(data: RecData) -> None:
    splits = [make_split(data.interactions, replace(COLD_USER, support_size=k), seed=0) for k in (1, 3, 5)]
    for split in splits[1:]:
        pd.testing.assert_frame_equal(split.valid, splits[0].valid)
        pd.testing.assert_frame_equal(split.test, splits[0].test)
        pd.testing.assert_frame_equal(split.extra["source"], splits[0].extra["source"])
    assert _rows(splits[0].train) < _rows(splits[1].train) < _rows(splits[2].train)
    assert _rows(splits[2].train) == _rows(splits[2].extra["support_pool"])
    first = splits[0].train.set_index("user")["row"]
    pool = splits[2].extra["support_pool"]
    assert first.sort_index().tolist() == pool[pool["position"] == 0].set_index("user")["row"].sort_index().tolist()


def test_cold_user_is_seeded(data: RecData) -> None:
    a, b = (make_split(data.interactions, COLD_USER, seed=s) for s in (0, 0))
    pd.testing.assert_frame_equal(a.test, b.test)
    assert _users(make_split(data.interactions, COLD_USER, seed=1).test) != _users(a.test)


def test_cold_item_never_trains_on_a_cold_item(data: RecData) -> None:
    split = make_split(data.interactions, COLD_ITEM, seed=0)
    valid_pool, test_pool = (set(split.extra[f"cold_{p}_items"]["item"].tolist()) for p in ("valid", "test"))
    assert set(split.valid["item"]) == valid_pool and set(split.test["item"]) == test_pool
    assert not (valid_pool | test_pool) & set(split.train["item"]) and not valid_pool & test_pool
    assert _rows(split.train, split.valid, split.test) == set(range(len(data.interactions)))
    n_items = data.interactions["item"].nunique()
    assert len(test_pool) == round(n_items * 0.2) and len(valid_pool) == round(n_items * 0.1)
    assert list(split.extra["cold_test_items"].columns) == ["item"]
    other = make_split(data.interactions, COLD_ITEM, seed=1)
    assert set(other.extra["cold_test_items"]["item"]) != test_pool


def test_cold_item_threshold_keeps_rare_items_warm(data: RecData) -> None:
    counts = data.interactions.groupby("item").size()
    split = make_split(data.interactions, replace(COLD_ITEM, min_item_interactions=30), seed=0)
    cold = pd.concat([split.extra["cold_valid_items"], split.extra["cold_test_items"]])["item"]
    assert (counts.loc[cold] >= 30).all()
    assert set(counts.index[counts < 30]) <= set(split.train["item"])


def _has_genre(data: RecData, items: pd.Series) -> np.ndarray:
    genres = data.items["genres"].loc[items.to_numpy()].str.split("|")
    return genres.apply(lambda g: bool(set(g) & set(GENRES))).to_numpy()


def test_domain_by_genre_puts_target_genres_in_the_target(data: RecData) -> None:
    split = make_split(data.interactions, DOMAIN, seed=0, items=data.items)
    target = pd.concat([split.train, split.valid, split.test])
    assert _has_genre(data, target["item"]).all() and not _has_genre(data, split.extra["source"]["item"]).any()
    assert _rows(target, split.extra["source"]) == set(range(len(data.interactions)))
    last_train = split.train.groupby("user")["timestamp"].max()
    first_test = split.test.groupby("user")["timestamp"].min()
    assert (first_test >= last_train.reindex(first_test.index)).all() and len(split.test) > 0


def test_domain_by_time_puts_later_interactions_in_the_target(data: RecData) -> None:
    split = make_split(data.interactions, DomainTimeSplit(time_quantile=0.7), seed=0)
    target = pd.concat([split.train, split.valid, split.test])
    assert split.extra["source"]["timestamp"].max() < target["timestamp"].min()
    assert len(target) == pytest.approx(0.3 * len(data.interactions), rel=0.02)


def test_target_fraction_subsamples_only_train(data: RecData) -> None:
    full, *cut = (make_split(data.interactions, replace(DOMAIN, target_fraction=f), seed=0, items=data.items)
                  for f in (1.0, 0.6, 0.3))
    for split in cut:
        pd.testing.assert_frame_equal(split.valid, full.valid)
        pd.testing.assert_frame_equal(split.test, full.test)
        pd.testing.assert_frame_equal(split.extra["source"], full.extra["source"])
        assert _users(split.train) == _users(full.train)  # at least one train interaction per user kept
    assert _rows(cut[1].train) < _rows(cut[0].train) < _rows(full.train)  # nested as the fraction grows
    per_user = full.train.groupby("user").size()
    expected = np.maximum(np.floor(per_user * 0.3 + 0.5), 1).astype(int)
    assert cut[1].train.groupby("user").size().equals(expected)
    again = make_split(data.interactions, replace(DOMAIN, target_fraction=0.3), seed=0, items=data.items)
    other = make_split(data.interactions, replace(DOMAIN, target_fraction=0.3), seed=1, items=data.items)
    pd.testing.assert_frame_equal(again.train, cut[1].train)
    assert _rows(other.train) != _rows(cut[1].train)


def test_domain_genre_errors(data: RecData) -> None:
    with pytest.raises(ConfigError, match="valid genres: .*Comedy"):
        make_split(data.interactions, replace(DOMAIN, target_genres=["Comdy"]), seed=0, items=data.items)
    with pytest.raises(ConfigError, match="needs the items table"):
        make_split(data.interactions, DOMAIN, seed=0)
    drama = data.items.assign(genres="Drama")
    with pytest.raises(ConfigError, match="target domain is empty"):
        make_split(data.interactions, replace(DOMAIN, target_genres=["Comedy"]), seed=0, items=drama)
    with pytest.raises(ConfigError, match="source domain is empty"):
        make_split(data.interactions, replace(DOMAIN, target_genres=["Drama"]), seed=0, items=drama)


@pytest.mark.parametrize("cfg, match", [
    (replace(COLD_USER, support_size=0), r"support_size=0 must be in 1\.\.split\.max_support=5"),
    (replace(COLD_USER, support_size=6), "support_size=6"),
    (replace(COLD_USER, min_query=0), "min_query=0"),
    (replace(COLD_USER, valid_users=1.0), r"valid_users=1.0 must be in \[0, 1\)"),
    (replace(COLD_USER, test_users=0.0), r"test_users=0.0 must be in \(0, 1\)"),
    (replace(COLD_USER, valid_users=0.5, test_users=0.5), "leave no warm users"),
    (replace(COLD_USER, max_support=500), "no user has >= split.max_support"),
    (replace(COLD_ITEM, test_items=-0.1), "test_items"),
    (replace(COLD_ITEM, min_item_interactions=0), "min_item_interactions=0"),
    (replace(DOMAIN, target_fraction=0.0), r"target_fraction=0.0 must be in \(0, 1\]"),
    (replace(DOMAIN, target_genres=[]), "at least one known genre"),
    ({**FLAT, "name": "domain", "domain_by": "year"}, "domain_by='year' is not one of genre, time"),
    (DomainTimeSplit(time_quantile=1.0), r"time_quantile=1.0 must be in \(0, 1\)"),
    (replace(DomainTimeSplit(), time_quantile=0.0), r"time_quantile=0.0 must be in \(0, 1\)"),
    (replace(DOMAIN, ratios=[0.5, 0.5]), "split.ratios"),
])
def test_bad_cold_configs_are_rejected(data: RecData, cfg: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_split(data.interactions, cfg, seed=0, items=data.items)


def test_split_keys_are_pinned_and_each_kind_keys_only_its_fields() -> None:
    # pinned so that a change of key is always on purpose; an old flat record keys as its kind
    assert split_key(MOVIELENS, ChronoRatioSplit(), 0) == "000f701f74a60eb8"
    assert split_key(MOVIELENS, LeaveOneOutSplit(), 0) == "ca040ee7ef439196"
    assert split_key(MOVIELENS, RandomRatioSplit(), 0) == "dd9264b46a10fa57"
    synthetic = {"name": "synthetic", "min_user_interactions": 5, "synthetic": {
        "n_users": 300, "n_items": 200, "interactions_per_user": 40, "n_factors": 8, "popularity_skew": 1.0,
        "noise": 0.5}}
    assert split_key(synthetic, ChronoRatioSplit(), 0) == "f7fe97e371d4a224"
    assert split_key(synthetic, ChronoRatioSplit(), 1) != split_key(synthetic, ChronoRatioSplit(), 0)  # generated
    assert split_key(MOVIELENS, {**FLAT, "support_size": 1, "test_items": 0.5}, 0) == "000f701f74a60eb8"
    assert split_key(MOVIELENS, COLD_USER, 0) == "1be5a1e1e4f7fa3f"
    assert split_key(MOVIELENS, DOMAIN, 0) == "10b64658a7b1cbed"
    assert split_key(MOVIELENS, DomainTimeSplit(), 0) == "3c70f2da5900ee1b"
    # where the files came from does not change the data; a local folder, or any other option, does
    assert split_key({**MOVIELENS, "cache_dir": "/elsewhere", "source": "recbole"}, ChronoRatioSplit(), 0) == "000f701f74a60eb8"
    assert split_key({**MOVIELENS, "source": "local", "local_dir": "/data/ml"}, ChronoRatioSplit(), 0) != "000f701f74a60eb8"
    assert split_key({**MOVIELENS, "min_user_interactions": 6}, ChronoRatioSplit(), 0) != "000f701f74a60eb8"

    def key(cfg: object, seed: int = 0) -> str:
        return split_key(MOVIELENS, cfg, seed)

    assert key(COLD_USER) != key(COLD_USER, 1) and key(COLD_USER) != key(replace(COLD_USER, support_size=2))
    for field, value in (("max_support", 6), ("min_query", 4), ("valid_users", 0.2), ("test_users", 0.3)):
        assert key(COLD_USER) != key(replace(COLD_USER, **{field: value})), field
    assert key(COLD_ITEM) != key(COLD_ITEM, 1) and key(COLD_ITEM) != key(replace(COLD_ITEM, test_items=0.3))
    assert key(COLD_ITEM) != key(replace(COLD_ITEM, min_item_interactions=3))
    assert key(DOMAIN) != key(replace(DOMAIN, target_genres=["Drama"]))
    assert key(DOMAIN) == key(replace(DOMAIN, target_genres=["Drama", "Mystery"]))  # a set of genres
    assert key(DOMAIN) != key(replace(DOMAIN, ratios=[0.7, 0.1, 0.2]))
    assert key(DOMAIN) == key(DOMAIN, 1)  # the full target train part is not random
    half = replace(DOMAIN, target_fraction=0.5)
    assert key(half) != key(DOMAIN) and key(half) != key(half, 1)
    by_time = DomainTimeSplit()
    assert key(by_time) != key(replace(by_time, time_quantile=0.5)) and key(by_time) != key(DOMAIN)


@pytest.mark.parametrize("record, expected", [
    (FLAT, ChronoRatioSplit()),
    ({**FLAT, "name": "leave_one_out"}, LeaveOneOutSplit()),
    ({**FLAT, "name": "cold_user", "support_size": 3}, ColdUserSplit(support_size=3)),
    ({**FLAT, "name": "cold_item", "test_items": 0.3}, ColdItemSplit(test_items=0.3)),
    ({**FLAT, "name": "domain", "target_genres": ["Comedy"]}, DomainGenreSplit(target_genres=["Comedy"])),
    ({**FLAT, "name": "domain", "domain_by": "time", "time_quantile": 0.7}, DomainTimeSplit(time_quantile=0.7)),
    ({"name": "domain", "domain_by": "time", "time_quantile": 0.7}, DomainTimeSplit(time_quantile=0.7)),
])
def test_records_of_the_flat_schema_keep_their_split_and_key(data: RecData, record: dict, expected: object) -> None:
    """A run folder or cache entry written before per-kind schemas names the same split, under the same key."""
    assert to_split_config(record) == expected
    assert split_key(MOVIELENS, record, 0) == split_key(MOVIELENS, expected, 0)
    old, new = (make_split(data.interactions, cfg, seed=0, items=data.items) for cfg in (record, expected))
    assert old.sizes() == new.sizes()
    for name in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(old, name), getattr(new, name))


def test_save_and_load_round_trip_with_extras(tmp_path: Path, data: RecData) -> None:
    split = make_split(data.interactions, COLD_USER, seed=0)
    save_split(split, tmp_path / "split")
    meta = json.loads((tmp_path / "split" / "split.json").read_text())
    assert meta["extras"] == ["source", "support_pool"] and meta["sizes"] == split.sizes()
    loaded = load_split(tmp_path / "split")
    assert list(loaded.extra) == ["source", "support_pool"]
    for name in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(split, name))
    for name, table in split.extra.items():
        pd.testing.assert_frame_equal(loaded.extra[name], table)
    (tmp_path / "split" / "support_pool.parquet").unlink()
    with pytest.raises(DataError, match="no complete saved split"):
        load_split(tmp_path / "split")


def test_version_1_split_without_extras_still_loads(tmp_path: Path, data: RecData) -> None:
    split = make_split(data.interactions, ChronoRatioSplit(), seed=0)
    save_split(split, tmp_path)
    (tmp_path / "split.json").write_text(json.dumps({"version": 1, "sizes": split.sizes()}))
    assert load_split(tmp_path).extra == {} and load_split(tmp_path).sizes() == split.sizes()


def test_bad_extra_names_are_rejected(tmp_path: Path) -> None:
    empty = pd.DataFrame({"user": [0]})
    with pytest.raises(DataError, match="lowercase identifier"):
        save_split(Split(empty, empty, empty, extra={"train": empty}), tmp_path)
    with pytest.raises(DataError, match="lowercase identifier"):
        save_split(Split(empty, empty, empty, extra={"../x": empty}), tmp_path)
