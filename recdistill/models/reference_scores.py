"""Reference rankers for cold-start studies, fitted by counting: uniformly random scores, and an
*oracle* popularity that counts the evaluated split's own interactions.

`random_scores`: score(u, i) is a hash of (seed, u, i) mapped to [0, 1): reproducible, and the same
whatever the batch or chunk sizes. `oracle_popularity`: score(u, i) = the number of *other* users
who interact with i in the counted table (the user's own interaction is subtracted). Counting the
test split itself is information no cold-start system has at prediction time; it is an upper
reference for "how well could popularity do", reported under its own name, never as a method.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from recdistill.models.ranking_base import RankingModel, RankingOutput, RankingShape

_MIX = 0x9E3779B97F4A7C15 & ((1 << 62) - 1)  # odd constant for the multiplicative hash


@dataclass
class RandomScoresConfig:
    """Seed of the random ranking."""

    name: str = "random_scores"
    seed: int = 0  # the same seed gives the same ranking


class RandomScores(RankingModel):
    """Uniformly random scores per (user, item) (see module docstring)."""

    Config = RandomScoresConfig
    input_kind = "none"
    dot_product_scores = False

    def __init__(self, config: RandomScoresConfig, shape: RankingShape) -> None:
        super().__init__()
        self.config, self.shape, self.hidden_dim = config, shape, 1
        self.register_buffer("anchor", torch.zeros(()))  # gives the model a device

    def forward(self, batch: dict[str, torch.Tensor]) -> RankingOutput:
        return RankingOutput(batch["user"].unsqueeze(-1).float(), self, {})

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return items.unsqueeze(-1).float()

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        users = state[:, 0].long()  # (B,)
        pairs = users[:, None] * self.shape.n_items + (items if items.dim() == 2 else items[None, :])  # (B, n)
        mixed = (pairs + self.config.seed * 7919 + 1) * _MIX % (1 << 61)  # (B, n)
        mixed = (mixed ^ (mixed >> 29)) * 0xBF58476D1CE4E5B9 % (1 << 61)
        return (mixed % (1 << 24)).float() / float(1 << 24)  # (B, n) in [0, 1)


@dataclass
class OraclePopularityConfig:
    """Oracle popularity: counts of the evaluated split (see module docstring)."""

    name: str = "oracle_popularity"


class OraclePopularity(RankingModel):
    """Leave-the-user-out interaction counts of a table (see module docstring)."""

    Config = OraclePopularityConfig
    input_kind = "none"
    dot_product_scores = False

    def __init__(self, config: OraclePopularityConfig, shape: RankingShape) -> None:
        super().__init__()
        self.config, self.shape, self.hidden_dim = config, shape, 1
        self.register_buffer("counts", torch.zeros(shape.n_items))
        self.register_buffer("own_keys", torch.zeros(0, dtype=torch.long))  # sorted user * n_items + item

    def fit_table(self, table: pd.DataFrame) -> None:
        """Count each item's distinct users in `table` (user, item columns)."""
        pairs = table[["user", "item"]].drop_duplicates()
        items = torch.as_tensor(pairs["item"].to_numpy(copy=True)).long()
        self.counts.copy_(torch.bincount(items, minlength=self.shape.n_items).float())
        keys = torch.as_tensor(pairs["user"].to_numpy(copy=True)).long() * self.shape.n_items + items
        self.own_keys = torch.sort(keys).values.to(self.counts.device)

    def forward(self, batch: dict[str, torch.Tensor]) -> RankingOutput:
        return RankingOutput(batch["user"].unsqueeze(-1).float(), self, {})

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.counts[items].unsqueeze(-1)

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        users = state[:, 0].long()  # (B,)
        grid = items if items.dim() == 2 else items[None, :].expand(len(users), -1)  # (B, n)
        keys = users[:, None] * self.shape.n_items + grid  # (B, n)
        if len(self.own_keys) == 0:
            return self.counts[grid]
        position = torch.searchsorted(self.own_keys, keys).clamp(max=len(self.own_keys) - 1)
        own = (self.own_keys[position] == keys).float()  # (B, n) the user's own interaction
        return self.counts[grid] - own
