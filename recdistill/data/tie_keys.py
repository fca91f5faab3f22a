"""The tie rule of every top-K list: equal scores are ordered by a key of (seed, raw user id, raw item id).

Breaking ties by internal id lets item numbering leak into ranking metrics (in ML-100K internal
ids follow release order, which correlates with popularity), and a list would change when the
same data is numbered differently. Instead each (user, item) pair gets a 64-bit key hashed from
the run's seed and the raw ids exactly as the data wrote them; among equal scores the larger key
ranks first. The key does not depend on internal ids, batch sizes or item chunks, so:
- a permutation of internal ids leaves every list and metric identical;
- for one user the order of tied items is a uniformly random permutation over the seed, so a
  model whose scores all tie scores like the random baseline in expectation;
- every role of a run ranks with the same rule, so paired tests compare like with like.
The sampled protocol also enumerates users and free items in key order (`user_order`,
`item_order`), so the same seed draws the same negatives (raw ids) however the data is numbered.

Raw ids are hashed once with pandas' vectorised SipHash (`pandas.util.hash_array`, stable
across versions); pair keys are a SplitMix64 finalizer (Steele, Lea & Flood, OOPSLA 2014) of
the two id hashes, computed with wrapping int64 tensor arithmetic on any device.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

_MASK64 = (1 << 64) - 1
# SplitMix64's constants as signed int64 (torch has no uint64 arithmetic)
_GAMMA = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)
_HASH_KEY = "recdistill-ties!"  # SipHash key of the raw ids (16 bytes); changing it changes every tie


def _signed(value: int) -> int:
    """A Python int taken modulo 2**64, as the signed int64 of the same bits."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 values (torch's >> is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finalizer, elementwise on int64 (wrapping arithmetic): a bijection of 64-bit values."""
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def raw_id_hashes(raw_ids: np.ndarray | list) -> torch.Tensor:
    """(N,) int64 SipHash of each raw id taken as a string ("005" and "5" differ)."""
    values = np.asarray([str(raw) for raw in raw_ids], dtype=object)
    hashed = pd.util.hash_array(values, hash_key=_HASH_KEY, categorize=False)  # (N,) uint64
    return torch.from_numpy(hashed.view(np.int64).copy())


class TieKeys:
    """Keys that order tied scores; one per (seed, raw user id, raw item id).

    `user_ids` / `item_ids` are the raw id of each internal id (position k = internal id k)."""

    def __init__(self, seed: int, user_ids: np.ndarray | list, item_ids: np.ndarray | list) -> None:
        self.seed = int(seed)
        seed_hash = mix64(torch.tensor([_signed(self.seed * _GAMMA)]))  # (1,)
        self.user = mix64(raw_id_hashes(user_ids) ^ seed_hash)  # (U,) int64
        self.item = mix64(raw_id_hashes(item_ids) + _GAMMA)  # (I,) int64
        self.item_order = torch.argsort(self.item)  # (I,) items in an order that ignores internal ids
        self.item_rank = torch.argsort(self.item_order)  # (I,) each item's position in item_order
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._on:
            self._on[device] = (self.user.to(device), self.item.to(device))
        return self._on[device]

    def pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(R, M) int64 keys of users (R,) with items (R, M) or (M,) (internal ids; -1 padding gets
        an arbitrary key). Larger keys rank first among equal scores."""
        user_table, item_table = self._tables(items.device)
        if items.dim() == 1:
            items = items[None, :].expand(len(users), -1)  # (R, M)
        return mix64(user_table[users.to(items.device)][:, None] ^ item_table[items.clamp(min=0)])  # (R, M)

    def user_order(self, users: torch.Tensor) -> torch.Tensor:
        """(B,) the positions of `users` (B,) sorted by their key: an order that ignores internal ids."""
        return torch.argsort(self.user[users.cpu()])

    @classmethod
    def by_index(cls, seed: int, n_users: int, n_items: int) -> "TieKeys":
        """Keys for data whose raw ids are the internal ids written in decimal (tests, benchmarks)."""
        return cls(seed, np.arange(n_users).astype(str), np.arange(n_items).astype(str))
