"""Structured-config schemas for datasets and splits (registered with Hydra's ConfigStore)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

DATASET_NAMES = ("movielens_100k", "synthetic")
DATASET_SOURCES = ("auto", "grouplens", "recbole", "local")
SPLIT_NAMES = ("chrono_ratio", "leave_one_out", "random_ratio")


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

    name: str = "chrono_ratio"  # chrono_ratio | leave_one_out | random_ratio
    ratios: List[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train, valid, test
