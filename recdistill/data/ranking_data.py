"""Turn split interactions into tensors for the top-K ranking task (batch layouts in
`recdistill.models.ranking_base`).

Input protocol: what a model may read when it ranks for a user is fixed per split --
`train` targets (extraction) read training interactions, `valid` reads training ones, `test` reads
training and validation ones; never a test interaction. The same interactions are masked from the
ranking when `mask_history` is on (an item the user already has is not recommended again).

Everything is gathered with tensor index operations, no per-row Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from recdistill.data.tie_keys import TieKeys

#: Which splits each split's users may read as input (and have masked from their ranking).
INPUT_SPLITS = {"train": ("train",), "valid": ("train",), "test": ("train", "valid")}


@dataclass
class InteractionLists:
    """Each user's items in time order, compressed: user u's items are `items[indptr[u]:indptr[u+1]]`."""

    indptr: torch.Tensor  # (U + 1,) int64
    items: torch.Tensor  # (nnz,) int64

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, n_users: int) -> "InteractionLists":
        """Lists from a table with user, item, timestamp (and `row`, which breaks time ties); data
        without a timestamp column keeps each user's items in row order (`row`, else the table's)."""
        ties = frame["row"].to_numpy() if "row" in frame.columns else np.arange(len(frame))
        times = frame["timestamp"].to_numpy() if "timestamp" in frame.columns else np.zeros(len(frame), np.int64)
        order = np.lexsort((ties, times, frame["user"].to_numpy()))
        users = frame["user"].to_numpy()[order]
        counts = np.bincount(users, minlength=n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        return cls(torch.from_numpy(indptr.astype(np.int64)),
                   torch.from_numpy(frame["item"].to_numpy()[order].astype(np.int64)))

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def counts(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """Number of items of each of `users` (all users when None)."""
        counts = self.indptr[1:] - self.indptr[:-1]
        return counts if users is None else counts[users]

    def flat(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, item) pairs: every item of `users[row]`, for masking or membership tests."""
        start, counts = self.indptr[users], self.counts(users)  # (B,)
        row = torch.repeat_interleave(torch.arange(len(users)), counts)  # (nnz_b,)
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)  # (nnz_b,)
        offset = torch.arange(len(row)) - first + torch.repeat_interleave(start, counts)
        return row, self.items[offset]

    def tail(self, users: torch.Tensor, length: int) -> torch.Tensor:
        """(B, length) each user's latest `length` items + 1, left-padded with 0."""
        end = self.indptr[users + 1]  # (B,)
        index = end[:, None] - length + torch.arange(length)[None, :]  # (B, L)
        inside = index >= self.indptr[users][:, None]
        return torch.where(inside, self.items[index.clamp(min=0)] + 1, 0)

    def concat(self, other: "InteractionLists") -> "InteractionLists":
        """Each user's items of `self` followed by those of `other` (other comes later in time)."""
        counts = self.counts() + other.counts()
        users = torch.arange(self.n_users)
        mine_row, mine = self.flat(users)
        their_row, theirs = other.flat(users)
        key = torch.cat([mine_row * 2, their_row * 2 + 1])  # per user: self's block, then other's
        order = torch.sort(key, stable=True).indices
        indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])
        return InteractionLists(indptr, torch.cat([mine, theirs])[order])


class RankingData:
    """The split as per-user item lists, with every batch layout the ranking models read, and the
    tie rule its top-K lists follow (`ties`; by default keys of seed 0 and raw ids "0", "1", ...)."""

    def __init__(self, frames: dict[str, pd.DataFrame], n_users: int, n_items: int, max_length: int,
                 ties: TieKeys | None = None) -> None:
        self.n_users, self.n_items, self.max_length = n_users, n_items, max_length
        self.ties = ties if ties is not None else TieKeys.by_index(0, n_users, n_items)
        self.lists = {name: InteractionLists.from_frame(frame, n_users) for name, frame in frames.items()}
        self.inputs = {"train": self.lists["train"], "valid": self.lists["train"],
                       "test": self.lists["train"].concat(self.lists["valid"])}
        self.train_keys = torch.sort(self._keys(self.lists["train"])).values

    def _keys(self, lists: InteractionLists) -> torch.Tensor:
        row, item = lists.flat(torch.arange(self.n_users))
        return row * self.n_items + item

    def eval_users(self, split: str) -> torch.Tensor:
        """Users with at least one `split` interaction (for `train`: at least one training item)."""
        return torch.nonzero(self.lists[split].counts() > 0).squeeze(1)

    def user_batch(self, users: torch.Tensor, split: str, device: torch.device | str = "cpu"
                   ) -> dict[str, torch.Tensor]:
        """The `users` batch: each user's latest input items under `split`'s protocol."""
        return {"user": users.to(device), "seq": self.inputs[split].tail(users, self.max_length).to(device),
                "final": torch.ones(len(users), dtype=torch.bool, device=device)}

    def history(self, users: torch.Tensor, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, item) pairs of the interactions `split` may read for `users` (the history mask)."""
        return self.inputs[split].flat(users)

    def targets(self, split: str) -> InteractionLists:
        """The items each user interacts with in `split` (the ground truth of the ranking)."""
        return self.lists[split]

    def training_batches(self, kind: str, batch_size: int, n_negatives: int = 1, stride: int = 0
                         ) -> "PairBatches | SequenceBatches":
        """The training batches a model with `input_kind == kind` reads (`stride`: see SequenceBatches)."""
        if kind == "pairs":
            return PairBatches(self, batch_size, n_negatives)
        if kind == "sequences":
            return SequenceBatches(self, batch_size, stride)
        raise ValueError(f"no training batches of kind {kind!r}; valid: pairs, sequences")


class PairBatches:
    """Every training interaction once per epoch, shuffled, with uniformly sampled negatives.

    Negatives that hit one of the user's training items are redrawn (up to 10 rounds; on a
    catalogue where a user has almost every item a few may remain, as in RecBole's sampler)."""

    def __init__(self, data: RankingData, batch_size: int, n_negatives: int) -> None:
        self.data, self.batch_size, self.n_negatives = data, batch_size, n_negatives
        self.users, self.items = data.lists["train"].flat(torch.arange(data.n_users))

    def __len__(self) -> int:
        return len(self.users)

    def batches(self, batch_size: int | None, device: torch.device | str, generator: torch.Generator,
                epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        size = batch_size or self.batch_size
        order = torch.randperm(len(self.users), generator=generator)
        negatives = self.sample_negatives(self.users, self.n_negatives, generator)  # (N, n_neg)
        for start in range(0, len(order), size):
            rows = order[start:start + size]
            user = self.users[rows]
            yield {"user": user.to(device), "pos": self.items[rows].to(device), "neg": negatives[rows].to(device),
                   "final": torch.ones(len(rows), dtype=torch.bool, device=device),
                   "n_targets": torch.tensor(len(rows))}

    def sample_negatives(self, users: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """(len(users), n) items drawn uniformly among those each user has not trained on."""
        data = self.data
        negatives = torch.randint(data.n_items, (len(users), n), generator=generator)
        keys = data.train_keys
        for _ in range(10):
            query = users[:, None] * data.n_items + negatives  # (N, n)
            position = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
            clash = keys[position] == query
            if not clash.any():
                break
            negatives[clash] = torch.randint(data.n_items, (int(clash.sum()),), generator=generator)
        return negatives


class SequenceBatches:
    """Each user's training items cut into rows of `max_length` (L) slots, with next-item targets.

    A row reads slots [end - L, end) of the user's sequence and predicts, at each slot p, item
    p + 1; targets are counted only from the previous row's end on, so each training transition
    is a target exactly once per epoch. Rows end at the user's last item, then every `stride`
    items back (stride L: rows do not overlap; stride L / 2: every target but a user's first few
    reads at least L / 2 earlier items, at twice the compute). On odd epochs the inner boundaries
    shift by stride / 2, so no transition always sits at a row start with little context. The row
    that ends at the last item has `final` True: its state is the user's state after reading all
    of their training items (what extraction computes).
    """

    def __init__(self, data: RankingData, batch_size: int, stride: int = 0) -> None:
        assert 0 <= stride <= data.max_length, f"stride {stride} must be in [0, max_length={data.max_length}]"
        self.data, self.batch_size = data, batch_size
        self.stride = stride or data.max_length
        self.lists = data.lists["train"]
        self.n_targets = int((self.lists.counts() - 1).clamp(min=0).sum())

    def __len__(self) -> int:
        return self.n_targets

    def rows(self, offset: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user, end, lower) per row: the row reads [end - L, end) and has targets at [lower, end)."""
        length = self.stride
        n = self.lists.counts()  # (U,)
        users_with_items = torch.nonzero(n > 0).squeeze(1)
        n = n[users_with_items]
        if offset:  # the row ending at the last item, then rows ending at n - offset - L * j
            n_rows = 1 + ((n - offset).clamp(min=0) + length - 1) // length
        else:
            n_rows = (n + length - 1) // length
        user = torch.repeat_interleave(users_with_items, n_rows)
        total = torch.repeat_interleave(n, n_rows)
        k = torch.arange(len(user)) - torch.repeat_interleave(torch.cumsum(n_rows, 0) - n_rows, n_rows)
        if offset:
            end = torch.where(k == 0, total, total - offset - length * (k - 1))
        else:
            end = total - length * k
        last_of_user = torch.cat([user[1:] != user[:-1], torch.tensor([True])])
        lower = torch.where(last_of_user, 0, torch.cat([end[1:], end.new_zeros(1)]))
        return user, end, lower

    def batches(self, batch_size: int | None, device: torch.device | str, generator: torch.Generator,
                epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        length = self.data.max_length
        user, end, lower = self.rows(self.stride // 2 if epoch % 2 else 0)
        rows_per_batch = max(1, (batch_size or self.batch_size) // self.stride)
        order = torch.randperm(len(user), generator=generator)
        for start in range(0, len(order), rows_per_batch):
            rows = order[start:start + rows_per_batch]
            yield self._batch(user[rows], end[rows], lower[rows], device)

    def _batch(self, user: torch.Tensor, end: torch.Tensor, lower: torch.Tensor,
               device: torch.device | str) -> dict[str, torch.Tensor]:
        length = self.data.max_length
        start = self.lists.indptr[user]  # (B,) where each user's items begin
        n = self.lists.counts(user)  # (B,)
        position = end[:, None] - length + torch.arange(length)[None, :]  # (B, L) position in the sequence
        inside = position >= 0
        items = self.lists.items
        seq = torch.where(inside, items[(start[:, None] + position).clamp(min=0)] + 1, 0)  # (B, L)
        has_target = inside & (position >= lower[:, None]) & (position + 1 < n[:, None])
        nxt = (start[:, None] + position + 1).clamp(min=0, max=len(items) - 1)
        target = torch.where(has_target, items[nxt] + 1, 0)  # (B, L)
        return {"user": user.to(device), "seq": seq.to(device), "target": target.to(device),
                "final": (end == n).to(device), "n_targets": has_target.sum()}
