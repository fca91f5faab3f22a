"""Load the dataset a config names through its reader, filter sparse users, and summarise it."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Mapping

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from recdistill.data.config import DatasetConfig
from recdistill.data.duplicates import resolve_duplicates
from recdistill.data.rating_scale import RatingScale, check_on_scale, infer_rating_scale, parse_rating_scale
from recdistill.data.readers.registry import dataset_config, get_reader
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError

log = logging.getLogger(__name__)


def load_dataset(cfg: DatasetConfig | Mapping[str, Any] | DictConfig, seed: int = 0) -> RecData:
    """Read the dataset `cfg.name` names with its reader (seed only matters for generated data),
    check it against the RecData contract and drop users below `min_user_interactions`."""
    typed = dataset_config(cfg)
    if typed.min_user_interactions < 0:
        raise ConfigError(f"dataset.min_user_interactions={typed.min_user_interactions} must be >= 0")
    data = get_reader(typed.name).read(typed, seed)
    data.check()
    data = with_rating_scale(data, parse_rating_scale(typed.rating_scale))
    data = resolve_duplicates(data, typed.duplicates)
    return filter_min_user_interactions(data, typed.min_user_interactions)


def with_rating_scale(data: RecData, configured: RatingScale | None) -> RecData:
    """`data` with its rating scale: `configured` (dataset.rating_scale) first, then the reader's,
    else inferred from the ratings; DataError naming the row when a rating is off the scale, and
    ConfigError when a scale is configured for data without ratings."""
    if not data.has_rating:
        if configured is not None:
            raise ConfigError(f"dataset.rating_scale={configured.as_list()} is set, but dataset {data.name!r} has no "
                              "rating column (implicit feedback); remove it or map a rating column")
        return data
    ratings = data.interactions["rating"].to_numpy()
    scale = configured or data.rating_scale or infer_rating_scale(ratings, f"dataset {data.name!r}")
    check_on_scale(ratings, scale, lambda row: f"dataset {data.name!r}, interaction row {row}")
    return replace(data, rating_scale=scale)


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
    """Counts, density, rating histogram and time span of a dataset (JSON-serialisable); the
    histogram and the span are None when the data has no rating or no timestamp column."""
    inter = data.interactions
    n = len(inter)
    per_user = np.bincount(inter["user"].to_numpy(), minlength=data.n_users)
    per_item = np.bincount(inter["item"].to_numpy(), minlength=data.n_items)
    histogram = None
    if data.has_rating:
        histogram = {f"{float(k):g}": int(v) for k, v in inter["rating"].value_counts().sort_index().items()}
    return {
        "name": data.name,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_interactions": n,
        "density": n / (data.n_users * data.n_items) if data.n_users and data.n_items else 0.0,
        "interactions_per_user": _spread(per_user),
        "interactions_per_item": _spread(per_item),
        "rating_histogram": histogram,
        "time_span": _time_span(inter["timestamp"].to_numpy()) if data.has_timestamp else None,
        "side_tables": {"items": data.items is not None, "users": data.users is not None},
        "duplicates": data.report.get("duplicates"),
        "rating_scale": data.rating_scale.as_list() if data.rating_scale else None,
        "fingerprint": data.fingerprint,
    }


def _time_span(ts: np.ndarray) -> dict[str, Any]:
    """First and last time (ISO, UTC) and the days between; {} when there are no interactions."""
    if not len(ts):
        return {}
    first, last = (pd.Timestamp(int(t), unit="s", tz="UTC") for t in (ts.min(), ts.max()))
    days = round((int(ts.max()) - int(ts.min())) / 86400, 1)
    return {"first": first.isoformat(), "last": last.isoformat(), "days": days}


def _spread(counts: np.ndarray) -> dict[str, float]:
    """min / median / mean / max of a count vector."""
    if len(counts) == 0:
        return {"min": 0, "median": 0.0, "mean": 0.0, "max": 0}
    return {"min": int(counts.min()), "median": float(np.median(counts)),
            "mean": round(float(counts.mean()), 2), "max": int(counts.max())}
