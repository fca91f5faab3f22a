"""Synthetic data: reproducible, fast, and structured like real rating data."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from recdistill.data.loading import load_dataset
from recdistill.data.movielens import KNOWN_GENRES
from recdistill.data.readers.synthetic import Synthetic
from recdistill.data.synthetic import SyntheticConfig, generate_synthetic
from recdistill.errors import ConfigError


@pytest.fixture(scope="module")
def data():
    return generate_synthetic(SyntheticConfig(), seed=0)


def test_same_seed_same_data_other_seed_other_data(data) -> None:
    again, other = generate_synthetic(SyntheticConfig(), seed=0), generate_synthetic(SyntheticConfig(), seed=1)
    pd.testing.assert_frame_equal(data.interactions, again.interactions)
    pd.testing.assert_frame_equal(data.items, again.items)
    pd.testing.assert_frame_equal(data.users, again.users)
    assert not data.interactions.equals(other.interactions)


def test_fast_at_default_size() -> None:
    start = time.perf_counter()
    generate_synthetic(SyntheticConfig(), seed=5)
    assert time.perf_counter() - start < 0.5


def test_tables_follow_the_recdata_contract(data) -> None:
    inter = data.interactions
    assert inter.dtypes.astype(str).to_dict() == {"user": "int64", "item": "int64", "rating": "float32",
                                                  "timestamp": "int64"}
    assert (data.n_users, data.n_items) == (300, 200) and len(data.items) == 200 and len(data.users) == 300
    assert inter["user"].between(0, 299).all() and inter["item"].between(0, 199).all()
    assert not inter.duplicated(["user", "item"]).any()
    assert str(data.items["year"].dtype) == "Int64" and str(data.users["age"].dtype) == "Int64"
    genres = data.items["genres"].str.split("|").explode()
    assert genres.isin(KNOWN_GENRES).all()
    assert inter.groupby("user").size().mean() == pytest.approx(40, rel=0.15)


def test_ratings_use_all_classes_with_a_realistic_skew(data) -> None:
    share = data.interactions["rating"].value_counts(normalize=True).sort_index()
    assert share.index.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert share[4.0] > share[3.0] > share[5.0] > share[2.0] > share[1.0]


def test_timestamps_increase_per_user(data) -> None:
    steps = data.interactions.groupby("user")["timestamp"].diff().dropna()
    assert (steps > 0).all()


def test_popularity_is_skewed() -> None:
    counts = lambda skew: np.sort(np.bincount(generate_synthetic(SyntheticConfig(popularity_skew=skew), 0)
                                              .interactions["item"], minlength=200))[::-1]
    skewed, flat = counts(1.5), counts(0.0)
    assert skewed[:20].sum() > 2 * flat[:20].sum()


def test_ratings_carry_the_latent_signal(data) -> None:
    """Users' ratings of the same item agree more than chance: item means explain variance."""
    inter = data.interactions
    item_mean = inter.groupby("item")["rating"].transform("mean")
    shuffled = item_mean.sample(frac=1, random_state=0).to_numpy()
    assert np.corrcoef(inter["rating"], item_mean)[0, 1] > np.corrcoef(inter["rating"], shuffled)[0, 1] + 0.2


def test_genres_follow_the_latent_factors(data) -> None:
    """Items sharing a first genre are co-consumed more than popularity alone predicts."""
    inter = data.interactions
    matrix = np.zeros((data.n_users, data.n_items))
    matrix[inter["user"], inter["item"]] = 1
    popularity = matrix.sum(axis=0)
    lift = (matrix.T @ matrix) * data.n_users / np.outer(popularity, popularity)  # (I, I)
    first = data.items["genres"].str.split("|").str[0].to_numpy()
    same = first[:, None] == first[None, :]
    np.fill_diagonal(same, False)
    off = ~same
    np.fill_diagonal(off, False)
    assert lift[same].mean() > 1.15 * lift[off].mean()


def test_load_dataset_synthetic_uses_the_seed() -> None:
    cfg = Synthetic.Config(synthetic=SyntheticConfig(n_users=20, n_items=15, interactions_per_user=6))
    a, b = load_dataset(cfg, seed=1), load_dataset(cfg, seed=2)
    assert (a.interactions.groupby("user").size() >= 5).all()
    assert not a.interactions.equals(b.interactions)


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ConfigError, match="n_items=0"):
        generate_synthetic(SyntheticConfig(n_items=0), seed=0)
    with pytest.raises(ConfigError, match="noise"):
        generate_synthetic(SyntheticConfig(noise=-1.0), seed=0)
