"""The in-memory form every dataset reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recdistill.data.rating_scale import RatingScale
from recdistill.errors import DataError

REQUIRED_COLUMNS = {"user": "int64", "item": "int64"}
OPTIONAL_COLUMNS = {"rating": "float32", "timestamp": "int64"}


@dataclass
class RecData:
    """Interactions plus optional side tables, with dense internal ids and the raw ids they stand for.

    interactions: columns user (int64, 0..n_users-1) and item (int64, 0..n_items-1), and where the
        data has them rating (float32) and timestamp (int64, seconds): implicit feedback has no
        rating column, data without times no timestamp column (`has_rating`, `has_timestamp`).
    items: indexed by internal item id; columns title (str), year (Int64, nullable),
        genres (str, '|'-joined, '' when none); None when the dataset has no item table.
    users: indexed by internal user id; columns age (Int64), gender (str), occupation (str);
        None when the dataset has no user table.
    user_ids / item_ids: numpy arrays of str, the raw id of each internal id exactly as the source
        wrote it ("005" and "5" are different ids); internal id k is position k.
    report: what loading found and did, for the data report (e.g. repeated pairs and the policy).
    rating_scale: the classes of explicit ratings (`recdistill.data.rating_scale`); None when the
        reader does not know it (load_dataset then takes dataset.rating_scale or infers it) or when
        there are no ratings.
    fingerprint: hex sha256 of what the data was read from (the input files' bytes, or a named
        dataset's verified checksums); None for generated data, which its config and seed determine.
        Split and model cache keys include it, so an edited file never reuses a stale split or model.
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame | None
    users: pd.DataFrame | None
    user_ids: np.ndarray
    item_ids: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)  # what loading found and did (e.g. duplicates)
    rating_scale: RatingScale | None = None
    fingerprint: str | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def has_rating(self) -> bool:
        """True when interactions carry an explicit rating."""
        return "rating" in self.interactions.columns

    @property
    def has_timestamp(self) -> bool:
        """True when interactions carry a time."""
        return "timestamp" in self.interactions.columns

    def check(self) -> None:
        """Raise DataError naming the dataset when the tables break the contract above."""
        inter = self.interactions
        for column, dtype in {**REQUIRED_COLUMNS, **OPTIONAL_COLUMNS}.items():
            if column not in inter.columns:
                if column in REQUIRED_COLUMNS:
                    self._fail(f"interactions lack the {column!r} column (has {list(inter.columns)})")
                continue
            if str(inter[column].dtype) != dtype:
                self._fail(f"interactions column {column!r} is {inter[column].dtype}, expected {dtype}")
        for what, ids, size in (("user", self.user_ids, self.n_users), ("item", self.item_ids, self.n_items)):
            _check_raw_ids(self, what, ids)
            codes = inter[what].to_numpy()
            if len(codes) and (codes.min() < 0 or codes.max() >= size):
                self._fail(f"internal {what} ids span {codes.min()}..{codes.max()}, outside 0..{size - 1}")
        for what, table, size in (("items", self.items, self.n_items), ("users", self.users, self.n_users)):
            if table is not None and len(table) != size:
                self._fail(f"the {what} table has {len(table)} rows for {size} {what}")

    def _fail(self, message: str) -> None:
        raise DataError(f"dataset {self.name!r}: {message}")


def _check_raw_ids(data: RecData, what: str, ids: np.ndarray) -> None:
    """Raw ids are a 1-D array of distinct str."""
    if not isinstance(ids, np.ndarray) or ids.ndim != 1:
        data._fail(f"{what}_ids must be a 1-D numpy array, got {type(ids).__name__}")
    if ids.dtype.kind != "U" and not (ids.dtype == object and all(isinstance(i, str) for i in ids)):
        data._fail(f"{what}_ids must hold str (the raw ids as written), got dtype {ids.dtype}")
    duplicated = pd.Index(ids).duplicated()
    if duplicated.any():
        data._fail(f"raw {what} id {str(ids[np.argmax(duplicated)])!r} maps to two internal ids")
