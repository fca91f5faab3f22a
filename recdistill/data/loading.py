"""Load a dataset named in the config, filter sparse users, and summarise it."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recdistill.data.config import DATASET_NAMES, DatasetConfig
from recdistill.data.fetch import fetch_movielens_100k
from recdistill.data.movielens import read_movielens
from recdistill.data.synthetic import generate_synthetic
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError

log = logging.getLogger(__name__)


def load_dataset(cfg: DatasetConfig, seed: int = 0) -> RecData:
    """Build the RecData named by `cfg.name` (seed only matters for synthetic data)."""
    if cfg.min_user_interactions < 0:
        raise ConfigError(f"dataset.min_user_interactions={cfg.min_user_interactions} must be >= 0")
    if cfg.name == "movielens_100k":
        local_dir = Path(cfg.local_dir).expanduser() if cfg.local_dir else None
        directory, fmt = fetch_movielens_100k(Path(cfg.cache_dir).expanduser(), cfg.source, local_dir)
        log.info("Reading MovieLens-100K (%s format) from %s", fmt, directory)
        data = read_movielens(directory, fmt)
    elif cfg.name == "synthetic":
        log.info("Generating synthetic data (seed %d)", seed)
        data = generate_synthetic(cfg.synthetic, seed)
    else:
        raise ConfigError(f"dataset.name={cfg.name!r} is not one of {', '.join(DATASET_NAMES)}")
    return filter_min_user_interactions(data, cfg.min_user_interactions)


def filter_min_user_interactions(data: RecData, minimum: int) -> RecData:
    """Drop users with fewer than `minimum` interactions, then items left with none; re-index ids."""
    counts = np.bincount(data.interactions["user"].to_numpy(), minlength=data.n_users)
    keep_users = counts >= minimum
    if keep_users.all():
        return data
    inter = data.interactions[keep_users[data.interactions["user"].to_numpy()]]
    keep_items = np.zeros(data.n_items, dtype=bool)
    keep_items[inter["item"].to_numpy()] = True
    log.info("Dropping %d users with < %d interactions (%d interactions, %d items left without any)",
             int((~keep_users).sum()), minimum, len(data.interactions) - len(inter), int((~keep_items).sum()))
    return _reindex(data, inter, keep_users, keep_items)


def _reindex(data: RecData, inter: pd.DataFrame, keep_users: np.ndarray, keep_items: np.ndarray) -> RecData:
    """Renumber kept users and items to 0..n-1, keeping their relative order and side rows."""
    new_user = np.cumsum(keep_users) - 1  # old id -> new id (valid where kept)
    new_item = np.cumsum(keep_items) - 1
    inter = inter.assign(user=new_user[inter["user"].to_numpy()], item=new_item[inter["item"].to_numpy()])

    def side(table: pd.DataFrame | None, keep: np.ndarray) -> pd.DataFrame | None:
        if table is None:
            return None
        return table[keep].reset_index(drop=True).rename_axis(table.index.name)

    return replace(data, interactions=inter.reset_index(drop=True), items=side(data.items, keep_items),
                   users=side(data.users, keep_users), user_ids=data.user_ids[keep_users],
                   item_ids=data.item_ids[keep_items])


def describe(data: RecData) -> dict[str, Any]:
    """Counts, density, rating histogram and time span of a dataset (JSON-serialisable)."""
    inter = data.interactions
    n = len(inter)
    per_user = np.bincount(inter["user"].to_numpy(), minlength=data.n_users)
    per_item = np.bincount(inter["item"].to_numpy(), minlength=data.n_items)
    ratings = inter["rating"].value_counts().sort_index()
    ts = inter["timestamp"].to_numpy()
    span: dict[str, Any] = {}
    if n:
        first, last = (pd.Timestamp(int(t), unit="s", tz="UTC") for t in (ts.min(), ts.max()))
        span = {"first": first.isoformat(), "last": last.isoformat(),
                "days": round((int(ts.max()) - int(ts.min())) / 86400, 1)}
    return {
        "name": data.name,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_interactions": n,
        "density": n / (data.n_users * data.n_items) if data.n_users and data.n_items else 0.0,
        "interactions_per_user": _spread(per_user),
        "interactions_per_item": _spread(per_item),
        "rating_histogram": {f"{float(k):g}": int(v) for k, v in ratings.items()},
        "time_span": span,
        "side_tables": {"items": data.items is not None, "users": data.users is not None},
    }


def _spread(counts: np.ndarray) -> dict[str, float]:
    """min / median / mean / max of a count vector."""
    if len(counts) == 0:
        return {"min": 0, "median": 0.0, "mean": 0.0, "max": 0}
    return {"min": int(counts.min()), "median": float(np.median(counts)),
            "mean": round(float(counts.mean()), 2), "max": int(counts.max())}
