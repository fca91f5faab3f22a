"""The per-user split rules that every kind builds on: the `Split` record, time order, and the
chronological, leave-one-out and random splits (see `recdistill.data.splits` for the counts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from recdistill.data.split_config import (ChronoRatioSplit, DomainGenreSplit, DomainTimeSplit, LeaveOneOutSplit,
                                          RandomRatioSplit)
from recdistill.errors import ConfigError

PARTS = ("train", "valid", "test")


@dataclass
class Split:
    """Three disjoint interaction tables plus named extras; `row` is each interaction's input position.

    train / valid / test are what the (target) task trains, selects models and is tested on;
    `extra` holds split-specific tables such as a source domain or candidate pools.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Number of rows in each part, then in each extra table."""
        sizes = {name: len(getattr(self, name)) for name in PARTS}
        return {**sizes, **{name: len(table) for name, table in self.extra.items()}}


def with_row(interactions: pd.DataFrame) -> pd.DataFrame:
    """The interactions with a fresh index and a `row` column (the input position, unless already there)."""
    frame = interactions.reset_index(drop=True)
    if "row" not in frame.columns:
        frame = frame.assign(row=np.arange(len(frame), dtype=np.int64))
    return frame


def check_ratios(cfg: ChronoRatioSplit | RandomRatioSplit | DomainGenreSplit | DomainTimeSplit) -> np.ndarray:
    """Validated (train, valid, test) ratios."""
    ratios = np.asarray(list(cfg.ratios), dtype=float)
    if ratios.shape != (3,) or (ratios < 0).any() or ratios[0] <= 0 or abs(ratios.sum() - 1) > 1e-6:
        raise ConfigError(f"split.ratios={list(cfg.ratios)} must be three non-negative numbers "
                          "(train > 0) that sum to 1, e.g. [0.8, 0.1, 0.1]")
    return ratios


def _half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(np.int64)


def _per_user_counts(n: np.ndarray, ratios: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(n_valid, n_test) for users with n interactions each (see the module docstring); ratios None: leave one out."""
    enough = n >= 3
    if ratios is None:
        ones = enough.astype(np.int64)
        return ones, ones
    low_test, low_valid = int(ratios[2] > 0), int(ratios[1] > 0)
    n_test = np.clip(_half_up(n * ratios[2]), low_test, np.maximum(n - 2, low_test))
    n_valid = np.clip(_half_up(n * ratios[1]), low_valid, np.maximum(n - 1 - n_test, low_valid))
    return np.where(enough, n_valid, 0), np.where(enough, n_test, 0)


def time_order(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(order, position): rows sorted by user, time, row; each sorted row's 0-based rank in its user's history."""
    user = frame["user"].to_numpy()
    order = np.lexsort((frame["row"].to_numpy(), frame["timestamp"].to_numpy(), user))
    sorted_user = user[order]
    return order, pd.Series(sorted_user).groupby(sorted_user).cumcount().to_numpy()


def chrono_parts(frame: pd.DataFrame, ratios: Optional[np.ndarray]) -> np.ndarray:
    """(N,) part of each row (0 train, 1 valid, 2 test) by the per-user rules of the module docstring;
    `ratios` None: leave one out."""
    part = np.zeros(len(frame), dtype=np.int8)
    if len(frame) == 0:
        return part
    order, position = time_order(frame)
    user = frame["user"].to_numpy()
    n = np.bincount(user)[user[order]]  # (N,) interactions of each sorted row's user
    n_valid, n_test = _per_user_counts(n, ratios)
    n_train = n - n_valid - n_test
    part[order] = np.where(position < n_train, 0, np.where(position < n_train + n_valid, 1, 2))
    return part


def _by_part(frame: pd.DataFrame, part: np.ndarray) -> Split:
    """The split whose train / valid / test are the rows of part 0 / 1 / 2."""
    return Split(*(frame[part == k].reset_index(drop=True) for k in range(3)))


def chrono_ratio_split(frame: pd.DataFrame, cfg: ChronoRatioSplit, seed: int, items: Any = None) -> Split:
    """Per user, by time: the ratios' shares of each history (see the module docstring)."""
    return _by_part(frame, chrono_parts(frame, check_ratios(cfg)))


def leave_one_out_split(frame: pd.DataFrame, cfg: LeaveOneOutSplit, seed: int, items: Any = None) -> Split:
    """Per user, by time: the last interaction test, the one before valid, the rest train."""
    return _by_part(frame, chrono_parts(frame, None))


def random_ratio_split(frame: pd.DataFrame, cfg: RandomRatioSplit, seed: int, items: Any = None) -> Split:
    """A seeded permutation of all rows: the last shares are valid, then test."""
    ratios = check_ratios(cfg)
    n = len(frame)
    n_test, n_valid = int(_half_up(np.array(n * ratios[2]))), int(_half_up(np.array(n * ratios[1])))
    order = np.random.default_rng(seed).permutation(n)
    part = np.zeros(n, dtype=np.int8)  # 0 train, 1 valid, 2 test
    part[order[n - n_test - n_valid:n - n_test]] = 1
    part[order[n - n_test:]] = 2
    return _by_part(frame, part)
