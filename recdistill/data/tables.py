"""The in-memory form every dataset reader produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class RecData:
    """Interactions plus optional side tables, with contiguous integer ids.

    interactions: columns user (int64, 0..n_users-1), item (int64, 0..n_items-1),
        rating (float32), timestamp (int64, seconds).
    items: indexed by internal item id; columns title (str), year (Int64, nullable),
        genres (str, '|'-joined, '' when none).
    users: indexed by internal user id; columns age (Int64), gender (str), occupation (str);
        None when the dataset has no user table.
    user_ids / item_ids: the raw id (as str) of each internal id.
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame | None
    users: pd.DataFrame | None
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)
