"""Filters applied to a dataset before it is split: positive-rating threshold, then k-core.

- `positive_threshold` (ranking on explicit data): only interactions rated >= the threshold count
  as interactions, the common way to turn ratings into implicit feedback.
- k-core: drop users with fewer than `min_user` interactions and items with fewer than `min_item`,
  and repeat until no user or item falls below its minimum (a fixed point, as RecBole and most
  papers filter), then renumber the rest in their original order. Users and items without any
  interaction (left by an earlier filter, or listed in a side table) go too when their minimum is
  >= 1 or when rows were dropped; with both minimums 0 the data stays as it is. With `min_item` = 0
  this is the old single pass over users, since dropping items never lowers a user count then.

Each filter returns the data and what it dropped, for the data report.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from recdistill.data.tables import RecData
from recdistill.errors import ConfigError

log = logging.getLogger(__name__)


def positive_only(data: RecData, threshold: float | None) -> tuple[RecData, dict[str, Any] | None]:
    """Keep interactions rated >= `threshold` (None: all); ConfigError when the data has no ratings."""
    if threshold is None:
        return data, None
    if not data.has_rating:
        raise ConfigError(f"dataset.positive_threshold={threshold:g} needs ratings, but dataset {data.name!r} has no "
                          "rating column (it is implicit feedback already); remove dataset.positive_threshold")
    keep = data.interactions["rating"].to_numpy() >= threshold
    dropped = int((~keep).sum())
    log.info("positive_threshold %g: keeping %d of %d interactions", threshold, int(keep.sum()), len(keep))
    interactions = data.interactions[keep].reset_index(drop=True)
    return replace(data, interactions=interactions), {"threshold": threshold, "interactions_dropped": dropped}


def k_core(data: RecData, min_user: int, min_item: int) -> tuple[RecData, dict[str, Any] | None]:
    """Users with >= `min_user` and items with >= `min_item` interactions, iterated to a fixed point
    (see the module docstring); the data unchanged, and None, when nothing falls below."""
    inter = data.interactions
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    keep = np.ones(len(inter), dtype=bool)
    rounds = 0
    while True:
        user_counts = np.bincount(users[keep], minlength=data.n_users)
        item_counts = np.bincount(items[keep], minlength=data.n_items)
        low = keep & ((user_counts[users] < min_user) | (item_counts[items] < min_item))
        if not low.any():
            break
        keep &= ~low
        rounds += 1
    # users and items with no interaction left go when a minimum asks for one, or when rows were dropped
    keep_users = user_counts > 0 if (rounds or min_user > 0) else np.ones(data.n_users, dtype=bool)
    keep_items = item_counts > 0 if (rounds or min_item > 0) else np.ones(data.n_items, dtype=bool)
    if rounds == 0 and keep_users.all() and keep_items.all():
        return data, None
    report = {"min_user_interactions": min_user, "min_item_interactions": min_item, "rounds": rounds,
              "users_dropped": int(data.n_users - keep_users.sum()),
              "items_dropped": int(data.n_items - keep_items.sum()),
              "interactions_dropped": int((~keep).sum())}
    log.info("k-core (users >= %d, items >= %d, %d rounds): dropping %d users, %d items, %d interactions",
             min_user, min_item, rounds, report["users_dropped"], report["items_dropped"],
             report["interactions_dropped"])
    return _reindex(data, inter[keep], keep_users, keep_items), report


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
