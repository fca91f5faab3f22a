"""What serving knows besides the model: raw id maps, item titles, each known user's history, and the tie rule.

Raw ids stay strings exactly as the data wrote them ("005" and "5" are different users). A known
user's *history* is every interaction of the run's split, train + valid + test, in time order:
sequence models read its latest `max_length` items, and by default every item in it is excluded
from the user's recommendations (seen items). Internal id k is row k of the id maps.

Files of an export folder (see `write` / `read`):
    users.parquet     user: the raw id of internal user k, as text
    items.parquet     item: the raw id of internal item k, as text; title (and year, genres) where
                      the dataset has an item table
    history.parquet   user, item: internal ids, one row per interaction, each user's rows in time order
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from recdistill.data.ranking_data import InteractionLists
from recdistill.data.tie_keys import TieKeys
from recdistill.errors import ConfigError, DataError
from recdistill.utils.atomic import write_parquet

#: The splits whose interactions form a known user's serving history (and seen items).
HISTORY_SPLITS = ("train", "valid", "test")
#: The raw user id a new user (recommended from a given history) is hashed as by the tie rule.
NEW_USER_ID = ""
#: Unknown ids listed by name in an error message before the rest is counted.
_LISTED = 10


class UnknownIdError(ConfigError):
    """Raw user or item ids that the model never saw; `kind` is "user" or "item", `ids` lists them all."""

    def __init__(self, kind: str, ids: Sequence[str], known: np.ndarray) -> None:
        self.kind, self.ids = kind, list(ids)
        named = ", ".join(repr(i) for i in self.ids[:_LISTED])
        more = f" and {len(self.ids) - _LISTED} more" if len(self.ids) > _LISTED else ""
        examples = ", ".join(repr(str(i)) for i in known[:3])
        super().__init__(f"unknown {kind}{'s' if len(self.ids) > 1 else ''} {named}{more}: not among the "
                         f"{len(known)} {kind}s the model knows (raw ids match exactly as text, e.g. {examples})")


@dataclass
class Catalog:
    """Id maps, item side table, serving histories and the tie rule of one served model."""

    user_ids: np.ndarray  # (U,) str, raw id of internal user k
    item_ids: np.ndarray  # (I,) str, raw id of internal item k
    items: pd.DataFrame | None  # (I, ...) title (year, genres) by internal item id; None without an item table
    history: InteractionLists  # each known user's interactions of every split, in time order
    tie_seed: int  # the run's seed: equal scores are ordered by a hash of (seed, raw user id, raw item id)

    def __post_init__(self) -> None:
        # plain dicts and numpy arrays: a single request looks up a few ids, and pandas' per-call cost dominates
        self._users = {str(raw): index for index, raw in enumerate(self.user_ids)}
        self._items = {str(raw): index for index, raw in enumerate(self.item_ids)}
        self._indptr, self._history = self.history.indptr.numpy(), self.history.items.numpy()  # (U + 1,), (nnz,)
        has_titles = self.items is not None and "title" in self.items.columns
        self._titles = self.items["title"].to_numpy(dtype=object, na_value=None) if has_titles else None  # (I,)
        # the new-user slot sits after the known users; its key is hashed from NEW_USER_ID
        self.ties = TieKeys(self.tie_seed, [*self.user_ids, NEW_USER_ID], self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def new_user(self) -> int:
        """The internal id the tie rule gives a user recommended from a given history."""
        return self.n_users

    @classmethod
    def from_split(cls, user_ids: np.ndarray, item_ids: np.ndarray, items: pd.DataFrame | None,
                   frames: Sequence[pd.DataFrame], tie_seed: int) -> "Catalog":
        """The catalog of a run: `frames` are its split parts (train, valid, test), whose union is the history."""
        union = pd.concat([frame for frame in frames if len(frame)], ignore_index=True)
        history = InteractionLists.from_frame(union, len(user_ids))  # ordered by time, then original row
        side = None if items is None else items.reset_index(drop=True)
        return cls(np.asarray(user_ids, dtype=object), np.asarray(item_ids, dtype=object), side, history,
                   int(tie_seed))

    def user_indices(self, raw_ids: Sequence[str]) -> np.ndarray:
        """(B,) internal ids of known users; UnknownIdError naming every unknown one."""
        return self._indices("user", self._users, raw_ids, self.user_ids)

    def item_indices(self, raw_ids: Sequence[str]) -> np.ndarray:
        """(n,) internal ids of known items, in the given order; UnknownIdError naming every unknown one."""
        return self._indices("item", self._items, raw_ids, self.item_ids)

    @staticmethod
    def _indices(kind: str, index: dict[str, int], raw_ids: Sequence[str], known: np.ndarray) -> np.ndarray:
        found = [index.get(str(raw), -1) for raw in raw_ids]
        unknown = [str(raw) for raw, position in zip(raw_ids, found) if position < 0]
        if unknown:
            raise UnknownIdError(kind, unknown, known)
        return np.asarray(found, dtype=np.int64)

    def sequences(self, users: np.ndarray, length: int) -> np.ndarray:
        """(B, length) int64 tokens of each known user's latest `length` history items: item id + 1,
        left-padded with 0 (the input layout of sequence models)."""
        start, end = self._indptr[users], self._indptr[np.asarray(users) + 1]  # (B,)
        index = end[:, None] - length + np.arange(length)[None, :]  # (B, L) positions in the history
        if len(self._history) == 0:
            return np.zeros(index.shape, dtype=np.int64)
        return np.where(index >= start[:, None], self._history[np.maximum(index, 0)] + 1, 0).astype(np.int64)

    def seen(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) pairs: every history item of `users[row]`."""
        start = self._indptr[users]  # (B,)
        counts = self._indptr[np.asarray(users) + 1] - start  # (B,)
        row = np.repeat(np.arange(len(start)), counts)  # (nnz_b,)
        offset = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(start, counts)
        return row, self._history[offset]

    def titles(self, items: np.ndarray) -> list[str | None] | None:
        """Titles of internal `items`, None where the dataset has no titles."""
        if self._titles is None:
            return None
        return [None if title is None else str(title) for title in self._titles[np.asarray(items, dtype=np.int64)]]

    def write(self, folder: Path) -> None:
        """users.parquet, items.parquet and history.parquet (see the module docstring)."""
        write_parquet(folder / "users.parquet", pd.DataFrame({"user": pd.Series(self.user_ids, dtype="string")}))
        items = pd.DataFrame({"item": pd.Series(self.item_ids, dtype="string")})
        if self.items is not None:
            items = pd.concat([items, self.items.reset_index(drop=True)], axis=1)
        write_parquet(folder / "items.parquet", items)
        row, item = self.history.flat(torch.arange(self.n_users))
        write_parquet(folder / "history.parquet", pd.DataFrame({"user": row.numpy().astype(np.int32),
                                                                "item": item.numpy().astype(np.int32)}))

    @classmethod
    def read(cls, folder: Path, tie_seed: int) -> "Catalog":
        """The catalog written by `write` into `folder`."""
        try:
            users = pd.read_parquet(folder / "users.parquet")
            items = pd.read_parquet(folder / "items.parquet")
            history = pd.read_parquet(folder / "history.parquet")
        except (OSError, ValueError) as error:
            raise DataError(f"export folder {folder} is incomplete or damaged ({error}); "
                            "export the run again") from None
        user_ids = users["user"].astype(str).to_numpy(dtype=object)
        item_ids = items["item"].astype(str).to_numpy(dtype=object)
        side = items.drop(columns="item") if items.shape[1] > 1 else None
        counts = np.bincount(history["user"].to_numpy(), minlength=len(user_ids))
        indptr = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        lists = InteractionLists(indptr, torch.from_numpy(history["item"].to_numpy().astype(np.int64)))
        return cls(user_ids, item_ids, side, lists, tie_seed)
