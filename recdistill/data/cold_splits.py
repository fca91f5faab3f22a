"""Cold-start and cross-domain splits: train / valid / test of a target task plus named extra tables.

cold_user: eligible users (>= max_support + min_query interactions; the others are dropped) are
    shuffled (seeded) into cold test, cold validation and warm users. Warm users' interactions are
    extra["source"]. A cold user's first max_support interactions in time are support candidates
    (extra["support_pool"], with `position`), the rest the query. train = the first support_size of
    them for every cold user; valid / test = the query of cold validation / test users. The query
    does not depend on support_size, so results across k compare, and smaller supports are nested.
cold_item: items with >= min_item_interactions interactions are shuffled (seeded) into cold test,
    cold validation and warm items (items under the threshold stay warm). train / valid / test =
    the interactions with warm / cold validation / cold test items; extra["cold_valid_items"] and
    extra["cold_test_items"] are one-column `item` tables, the candidate pools of evaluation.
domain_genre / domain_time: items with any of target_genres (domain_genre), or interactions from the
    time_quantile of timestamps on (domain_time), are the target domain; the rest is extra["source"]. The
    target is split per user by the chrono_ratio rules, then each user's train part is subsampled
    (seeded) to target_fraction, keeping at least one; valid / test are never subsampled, and the
    kept rows are nested as the fraction grows.
Group counts are round-half-up shares, at least one for a share > 0.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import pandas as pd

from recdistill.data.movielens import KNOWN_GENRES
from recdistill.data.split_config import ColdItemSplit, ColdUserSplit, DomainGenreSplit, DomainTimeSplit
from recdistill.data.split_rules import Split, check_ratios, chrono_parts, time_order
from recdistill.errors import ConfigError

log = logging.getLogger(__name__)


def make_cold_split(frame: pd.DataFrame, cfg: Any, seed: int, items: pd.DataFrame | None = None) -> Split:
    """The cold_user / cold_item / domain split of `cfg` (a typed split config); `frame` has its `row` column."""
    makers: dict[type, Callable[..., Split]] = {ColdUserSplit: cold_user_split, ColdItemSplit: cold_item_split,
                                                DomainGenreSplit: domain_split, DomainTimeSplit: domain_split}
    if type(cfg) not in makers:
        raise ConfigError(f"split.name={getattr(cfg, 'name', None)!r} is not one of "
                          "cold_user, cold_item, domain_genre, domain_time")
    return makers[type(cfg)](frame, cfg, seed, items)


def _share(cfg: ColdUserSplit | ColdItemSplit, key: str, low_open: bool) -> float:
    """A validated share in [0, 1) ((0, 1) when `low_open`)."""
    value = float(getattr(cfg, key))
    if not (0 < value < 1 if low_open else 0 <= value < 1):
        raise ConfigError(f"split.{key}={value} must be in {'(0' if low_open else '[0'}, 1)")
    return value


def _group_sizes(n: int, shares: tuple[float, float], what: str, keys: str) -> tuple[int, int]:
    """(n_valid, n_test) of n ids; ConfigError when a group with a share > 0, or the warm rest, is empty."""
    counts = [max(int(np.floor(n * s + 0.5)), 1) if s > 0 else 0 for s in shares]
    if n - sum(counts) < 1:
        raise ConfigError(f"only {n} {what} can be held out: split.{keys} leave no warm {what}; "
                          "lower the shares or use more data")
    return counts[0], counts[1]


def _assign_groups(ids: np.ndarray, n_valid: int, n_test: int, seed: int) -> np.ndarray:
    """(len(ids),) group of each id after a seeded shuffle: 0 warm, 1 cold validation, 2 cold test."""
    group = np.zeros(len(ids), dtype=np.int8)
    order = np.random.default_rng(seed).permutation(len(ids))
    group[order[:n_test]] = 2
    group[order[n_test:n_test + n_valid]] = 1
    return group


def _lookup(ids: np.ndarray, values: np.ndarray, query: np.ndarray, missing: int) -> np.ndarray:
    """values[ids == q] for each q of `query` (`missing` where q is not among the ids)."""
    table = np.full(int(max(ids.max(initial=-1), query.max(initial=-1))) + 1, missing, dtype=values.dtype)
    table[ids] = values
    return table[query]


def _parts(frame: pd.DataFrame, masks: list[np.ndarray]) -> list[pd.DataFrame]:
    """The rows of `frame` under each mask, re-indexed."""
    return [frame[mask].reset_index(drop=True) for mask in masks]


def cold_user_split(frame: pd.DataFrame, cfg: ColdUserSplit, seed: int, items: Any = None) -> Split:
    """Warm users as source; cold users' first k interactions as train, their query as valid / test."""
    max_support, k, min_query = int(cfg.max_support), int(cfg.support_size), int(cfg.min_query)
    if max_support < 1 or min_query < 1:
        raise ConfigError(f"split.max_support={max_support} and split.min_query={min_query} must be >= 1")
    if not 1 <= k <= max_support:
        raise ConfigError(f"split.support_size={k} must be in 1..split.max_support={max_support}")
    shares = (_share(cfg, "valid_users", False), _share(cfg, "test_users", True))
    user = frame["user"].to_numpy()
    counts = np.bincount(user) if len(user) else np.zeros(0, dtype=np.int64)
    users = np.flatnonzero(counts >= max_support + min_query)
    kept = counts[users].sum()
    if len(frame) > kept:
        log.info("cold_user: dropping %d users with < max_support + min_query = %d interactions (%d interactions)",
                 int((counts > 0).sum()) - len(users), max_support + min_query, len(frame) - int(kept))
    if len(users) == 0:
        raise ConfigError(f"no user has >= split.max_support + split.min_query = {max_support + min_query} "
                          f"interactions (most: {int(counts.max(initial=0))}); lower max_support or min_query")
    group = _assign_groups(users, *_group_sizes(len(users), shares, "users", "valid_users / test_users"), seed)
    row_group = _lookup(users, group, user, missing=-1)  # (N,) -1 for dropped users

    order, position_sorted = time_order(frame)
    position = np.empty(len(frame), dtype=np.int64)
    position[order] = position_sorted  # (N,) rank of each row in its user's history
    cold = row_group > 0
    pool = cold & (position < max_support)
    query = cold & ~pool
    train, valid, test, source = _parts(frame, [cold & (position < k), query & (row_group == 1),
                                                query & (row_group == 2), row_group == 0])
    support_pool = frame[pool].assign(position=position[pool]).reset_index(drop=True)
    return Split(train, valid, test, extra={"source": source, "support_pool": support_pool})


def cold_item_split(frame: pd.DataFrame, cfg: ColdItemSplit, seed: int, items: Any = None) -> Split:
    """Warm items' interactions as train; cold validation / test items' interactions as valid / test."""
    minimum = int(cfg.min_item_interactions)
    if minimum < 1:
        raise ConfigError(f"split.min_item_interactions={minimum} must be >= 1")
    shares = (_share(cfg, "valid_items", False), _share(cfg, "test_items", True))
    item = frame["item"].to_numpy()
    counts = np.bincount(item) if len(item) else np.zeros(0, dtype=np.int64)
    candidates = np.flatnonzero(counts >= minimum)
    n_below = int((counts > 0).sum()) - len(candidates)
    if n_below:
        log.info("cold_item: %d items with < min_item_interactions = %d interactions stay warm", n_below, minimum)
    sizes = _group_sizes(len(candidates), shares, "items", "valid_items / test_items")
    group = _assign_groups(candidates, *sizes, seed)
    row_group = _lookup(candidates, group, item, missing=0)  # (N,) items under the threshold stay warm
    train, valid, test = _parts(frame, [row_group == 0, row_group == 1, row_group == 2])
    pools = {f"cold_{name}_items": pd.DataFrame({"item": candidates[group == g].astype(np.int64)})
             for name, g in (("valid", 1), ("test", 2))}
    return Split(train, valid, test, extra=pools)


def target_genre_items(items: pd.DataFrame, genres: list[str]) -> np.ndarray:
    """Sorted ids (the items index) of items with any of `genres`; ConfigError naming the valid genres."""
    present = set(items["genres"].fillna("").astype(str).str.split("|").explode()) - {""}
    valid = sorted(present | set(KNOWN_GENRES))
    unknown = [g for g in genres if g not in valid]
    if not genres or unknown:
        raise ConfigError(f"split.target_genres={list(genres)} must name at least one known genre "
                          f"(unknown: {unknown}); valid genres: {', '.join(valid)}")
    exploded = items["genres"].fillna("").astype(str).str.split("|").explode()
    hit = exploded.isin(genres).groupby(level=0).any()  # (I,) bool, indexed by item id
    return np.sort(hit.index[hit.to_numpy()].to_numpy().astype(np.int64))


def _target_mask(frame: pd.DataFrame, cfg: DomainGenreSplit | DomainTimeSplit, items: pd.DataFrame | None
                 ) -> np.ndarray:
    """(N,) True for target-domain interactions."""
    if isinstance(cfg, DomainGenreSplit):
        if items is None or "genres" not in items.columns:
            raise ConfigError("split=domain_genre needs the items table with a `genres` column "
                              "(make_split(..., items=data.items)); use split=domain_time for data without one")
        return frame["item"].isin(target_genre_items(items, list(cfg.target_genres))).to_numpy()
    q = float(cfg.time_quantile)
    if not 0 < q < 1:
        raise ConfigError(f"split.time_quantile={q} must be in (0, 1)")
    timestamp = frame["timestamp"].to_numpy()
    cut = np.quantile(timestamp, q) if len(timestamp) else 0
    return timestamp >= cut


def subsample_per_user(frame: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """(N,) keep-mask: a seeded random round-half-up `fraction` of each user's rows, at least one per user."""
    if fraction >= 1 or len(frame) == 0:
        return np.ones(len(frame), dtype=bool)
    user = frame["user"].to_numpy()
    noise = np.random.default_rng(seed).random(len(frame))  # one draw per row: smaller fractions are nested
    order = np.lexsort((noise, user))
    sorted_user = user[order]
    rank = pd.Series(sorted_user).groupby(sorted_user).cumcount().to_numpy()
    n_keep = np.maximum(np.floor(np.bincount(user)[sorted_user] * fraction + 0.5), 1)  # (N,) per row's user
    keep = np.zeros(len(frame), dtype=bool)
    keep[order] = rank < n_keep
    return keep


def domain_split(frame: pd.DataFrame, cfg: DomainGenreSplit | DomainTimeSplit, seed: int,
                 items: pd.DataFrame | None = None) -> Split:
    """Source domain as an extra table; the target split per user in time, its train part subsampled."""
    fraction = float(cfg.target_fraction)
    if not 0 < fraction <= 1:
        raise ConfigError(f"split.target_fraction={fraction} must be in (0, 1]")
    ratios = check_ratios(cfg)
    target = _target_mask(frame, cfg, items)
    setting = "target_genres" if isinstance(cfg, DomainGenreSplit) else "time_quantile"
    for name, mask in (("target", target), ("source", ~target)):
        if not mask.any():
            raise ConfigError(f"split={cfg.name}: the {name} domain is empty; change split.{setting}")
    source, target_frame = _parts(frame, [~target, target])
    part = chrono_parts(target_frame, ratios)
    train = target_frame[part == 0].reset_index(drop=True)
    train = train[subsample_per_user(train, fraction, seed)].reset_index(drop=True)
    valid, test = _parts(target_frame, [part == 1, part == 2])
    if len(test) == 0:
        log.warning("domain: no target user has the 3 target interactions needed for a test part")
    return Split(train, valid, test, extra={"source": source})
