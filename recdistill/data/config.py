"""Structured-config schemas for datasets and splits (registered with Hydra's ConfigStore)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

DATASET_NAMES = ("movielens_100k", "synthetic")
DATASET_SOURCES = ("auto", "grouplens", "recbole", "local")
SPLIT_NAMES = ("chrono_ratio", "leave_one_out", "random_ratio", "cold_user", "cold_item", "domain")
DOMAIN_BY = ("genre", "time")


@dataclass
class SyntheticConfig:
    """Size and shape of the seeded synthetic dataset."""

    n_users: int = 300  # number of users
    n_items: int = 200  # number of items
    interactions_per_user: int = 40  # mean interactions per user (varies per user)
    n_factors: int = 8  # dimension of the latent taste vectors
    popularity_skew: float = 1.0  # power-law exponent of item popularity (0 = uniform)
    noise: float = 0.5  # std of the rating noise, relative to the affinity signal


@dataclass
class DatasetConfig:
    """Which dataset to load and where to cache it."""

    name: str = "movielens_100k"  # movielens_100k | synthetic
    cache_dir: str = "~/.cache/recdistill"  # downloads and derived files live here
    source: str = "auto"  # auto | grouplens | recbole | local
    local_dir: Optional[str] = None  # directory with u.data... or ml-100k.inter... (source=local)
    min_user_interactions: int = 5  # users with fewer interactions are dropped
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # used when name=synthetic


@dataclass
class SplitConfig:
    """How interactions are divided into train, valid and test."""

    name: str = "chrono_ratio"  # chrono_ratio | leave_one_out | random_ratio | cold_user | cold_item | domain
    ratios: List[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train, valid, test (domain: of the target)
    # cold_user: held-out users, each seen through the first k of their interactions
    support_size: int = 10  # k: support interactions per cold user in train, 1..max_support
    max_support: int = 10  # first interactions of each cold user reserved as support; the rest are the query
    min_query: int = 5  # users need >= max_support + min_query interactions to take part
    valid_users: float = 0.1  # share of those users held out as cold validation users
    test_users: float = 0.2  # share of those users held out as cold test users
    # cold_item: held-out items that are never trained on
    valid_items: float = 0.1  # share of candidate items held out as cold validation items
    test_items: float = 0.2  # share of candidate items held out as cold test items
    min_item_interactions: int = 1  # only items with at least this many interactions can be cold
    # domain: a source domain (extra table) and a target domain (train / valid / test)
    domain_by: str = "genre"  # genre | time
    target_genres: List[str] = field(default_factory=list)  # domain_by=genre: items with any of these are target
    time_quantile: float = 0.8  # domain_by=time: interactions from this quantile of timestamps on are target
    target_fraction: float = 1.0  # share of each user's target train interactions kept (valid / test never cut)
