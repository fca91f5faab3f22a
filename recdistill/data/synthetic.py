"""A seeded synthetic dataset with the structure of real rating data.

Users and items get latent taste vectors. Each user picks items with probability proportional to
power-law popularity x exp(affinity) (Gumbel top-k, without replacement). A user's taste drifts
from a start vector to an end vector; items are ordered in time by how much better they fit the
later taste, and rated with the taste of their moment: affinity + user bias + item bias + noise,
cut at quantiles so the 1..5 histogram matches MovieLens-like proportions. Item genres and the
first word of each title come from the latent factors, so item text carries signal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recdistill.data.movielens import KNOWN_GENRES, join_genres
from recdistill.data.rating_scale import RatingScale
from recdistill.data.tables import RecData
from recdistill.utils.config_checks import bounded, check_values

log = logging.getLogger(__name__)

RATING_SHARES = (0.06, 0.11, 0.27, 0.34, 0.22)  # share of ratings 1..5, close to MovieLens-100K
START_TIME = 1_577_836_800  # 2020-01-01 UTC
AFFINITY_WEIGHT = 2.0  # weight of taste x factors against log-popularity when users pick items
_MOODS = ("Dark", "Bright", "Silent", "Wild", "Golden", "Broken", "Secret", "Last", "Crimson",
          "Frozen", "Hidden", "Electric", "Lonely", "Burning", "Distant", "Iron")
_NOUNS = ("River", "Empire", "Garden", "Machine", "Summer", "Harbor", "Kingdom", "Signal",
          "Voyage", "Mirror", "Frontier", "Orchard", "Station", "Horizon", "Letter", "Circus")
_OCCUPATIONS = ("student", "engineer", "educator", "artist", "programmer", "writer", "doctor",
                "administrator", "librarian", "technician", "other")
_CHUNK = 1 << 22  # score at most this many (user, item) pairs at once


@dataclass
class SyntheticConfig:
    """Size and shape of the seeded synthetic dataset (the `dataset.synthetic` block)."""

    n_users: int = bounded(300, ge=1)  # number of users
    n_items: int = bounded(200, ge=1)  # number of items
    interactions_per_user: int = bounded(40, ge=1)  # mean interactions per user (varies per user)
    n_factors: int = bounded(8, ge=1)  # dimension of the latent taste vectors
    popularity_skew: float = bounded(1.0, ge=0)  # power-law exponent of item popularity (0 = uniform)
    noise: float = bounded(0.5, ge=0)  # std of the rating noise, relative to the affinity signal


def _check(cfg: SyntheticConfig) -> None:
    """Reject sizes that cannot produce a dataset (the domains declared on SyntheticConfig)."""
    check_values(cfg, "dataset.synthetic.")


def _choose_items(rng: np.random.Generator, taste: np.ndarray, factors: np.ndarray, log_pop: np.ndarray,
                  counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample `counts[u]` distinct items per user by popularity x exp(affinity); return (users, items)."""
    n_users, n_items = len(taste), len(factors)
    users, items = [], []
    step = max(1, _CHUNK // n_items)
    for start in range(0, n_users, step):  # chunks of users bound memory; not a per-user loop
        block = slice(start, start + step)
        scores = log_pop + taste[block] @ factors.T  # (B, I)
        scores += rng.gumbel(size=scores.shape)
        most = int(counts[block].max())
        if most < n_items:  # only the best `most` per row need sorting: partition first (O(I) per row)
            top = np.argpartition(-scores, most - 1, axis=1)[:, :most]  # (B, most) unordered
            order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
        else:
            order = np.argsort(-scores, axis=1)  # (B, I) best first
        take = np.arange(order.shape[1])[None, :] < counts[block, None]  # (B, most)
        rows = np.broadcast_to(np.arange(start, start + scores.shape[0])[:, None], order.shape)
        users.append(rows[take])
        items.append(order[take])
    return np.concatenate(users), np.concatenate(items)


def generate_synthetic(cfg: SyntheticConfig, seed: int) -> RecData:
    """Generate a reproducible RecData (same cfg and seed give identical tables)."""
    _check(cfg)
    rng = np.random.default_rng(seed)
    n_users, n_items, k = cfg.n_users, cfg.n_items, cfg.n_factors

    taste_start = rng.normal(size=(n_users, k)) / np.sqrt(k)  # (U, K)
    taste_end = 0.7 * taste_start + 0.3 * rng.normal(size=(n_users, k)) / np.sqrt(k)  # (U, K) drifted
    factors = rng.normal(size=(n_items, k))  # (I, K)
    rank = rng.permutation(n_items) + 1  # popularity rank of each item
    log_pop = -cfg.popularity_skew * np.log(rank)  # (I,) power law
    user_bias = rng.normal(0.0, 0.3, n_users)
    item_bias = rng.normal(0.0, 0.3, n_items) + 0.1 * log_pop / max(1.0, np.log(n_items))

    mean = cfg.interactions_per_user
    activity = np.rint(mean * rng.lognormal(-0.125, 0.5, n_users)).astype(np.int64)
    counts = np.clip(activity, min(5, mean, n_items), n_items)  # (U,)
    mid_taste = AFFINITY_WEIGHT * 0.5 * (taste_start + taste_end)  # (U, K)
    user, item = _choose_items(rng, mid_taste, factors, log_pop, counts)

    # Time order: items that suit the end taste better than the start taste come later.
    a_start = np.einsum("nk,nk->n", taste_start[user], factors[item])  # (N,)
    a_end = np.einsum("nk,nk->n", taste_end[user], factors[item])  # (N,)
    lateness = a_end - a_start + 0.5 * rng.normal(size=len(user))
    order = np.lexsort((lateness, user))
    user, item, a_start, a_end = user[order], item[order], a_start[order], a_end[order]
    position = pd.Series(user).groupby(user).cumcount().to_numpy()
    frac = position / np.maximum(counts[user] - 1, 1)  # 0 at a user's first interaction, 1 at the last
    affinity = (1 - frac) * a_start + frac * a_end

    score = affinity + user_bias[user] + item_bias[item] + cfg.noise * rng.normal(size=len(user))
    cuts = np.quantile(score, np.cumsum(RATING_SHARES)[:-1])
    rating = (np.searchsorted(cuts, score, side="right") + 1).astype(np.float32)

    start = START_TIME + rng.integers(0, 365 * 86400, n_users)
    gaps = np.ceil(rng.exponential(2 * 86400, len(user))).astype(np.int64) + 1  # >= 1 s apart
    gaps[position == 0] = 0
    timestamp = start[user] + pd.Series(gaps).groupby(user).cumsum().to_numpy()

    interactions = pd.DataFrame({"user": user.astype(np.int64), "item": item.astype(np.int64),
                                 "rating": rating, "timestamp": timestamp.astype(np.int64)})
    log.info("Synthetic data: %d users, %d items, %d interactions", n_users, n_items, len(interactions))
    return RecData(name="synthetic", interactions=interactions, items=_items_table(rng, factors),
                   users=_users_table(rng, taste_start), user_ids=np.arange(1, n_users + 1).astype(str),
                   item_ids=np.arange(1, n_items + 1).astype(str), rating_scale=RatingScale(1.0, 5.0, 1.0))


def _items_table(rng: np.random.Generator, factors: np.ndarray) -> pd.DataFrame:
    """Titles, years and genres; genres and the title's first word follow the latent factors."""
    n_items, k = factors.shape
    to_genre = np.random.default_rng(0).normal(size=(k, len(KNOWN_GENRES)))  # fixed factor->genre map
    genre_score = factors @ to_genre  # (I, G)
    ranked = np.argsort(-genre_score, axis=1)
    n_genres = 1 + (rng.random(n_items) < 0.5) + (rng.random(n_items) < 0.2)  # 1..3 genres
    flags = np.zeros_like(genre_score, dtype=bool)
    for g in range(3):  # at most three columns, independent of the number of items
        rows = np.flatnonzero(n_genres > g)
        flags[rows, ranked[rows, g]] = True
    mood = np.array(_MOODS)[np.argmax(factors, axis=1) % len(_MOODS)]
    noun = np.array(_NOUNS)[rng.integers(0, len(_NOUNS), n_items)]
    title = pd.Series(mood).str.cat(pd.Series(noun), sep=" ")
    number = pd.Series(np.arange(1, n_items + 1)).astype(str)
    title = title.str.cat(number, sep=" ")  # unique titles
    year = np.clip(np.rint(1995 + 4 * factors[:, 0] + rng.normal(0, 6, n_items)), 1930, 2023)
    return pd.DataFrame({"title": title.astype(str), "year": pd.array(year.astype(np.int64), dtype="Int64"),
                         "genres": join_genres(flags).astype(str)}).rename_axis("item")


def _users_table(rng: np.random.Generator, taste: np.ndarray) -> pd.DataFrame:
    """Age, gender and occupation, loosely tied to the first taste factors."""
    n_users = len(taste)
    age = np.clip(np.rint(32 + 8 * taste[:, 0] * np.sqrt(taste.shape[1]) + rng.normal(0, 8, n_users)), 13, 75)
    gender = np.where(taste[:, -1] + 0.5 * rng.normal(size=n_users) > 0, "M", "F")
    occupation = np.array(_OCCUPATIONS)[rng.integers(0, len(_OCCUPATIONS), n_users)]
    return pd.DataFrame({"age": pd.array(age.astype(np.int64), dtype="Int64"),
                         "gender": pd.Series(gender, dtype=str),
                         "occupation": pd.Series(occupation, dtype=str)}).rename_axis("user")
