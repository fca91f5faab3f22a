"""Most-popular baseline: every user gets the same ranking, by number of training interactions.

`fit(train)` counts the interactions per item into a buffer, so a checkpoint holds the counts. The
score is log(1 + count) (or the raw count), a logit-like scale for strategies that read scores;
either way the ranking is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recdistill.data.ranking_data import InteractionLists
from recdistill.models.ranking_base import RankingModel, RankingOutput, RankingShape


@dataclass
class PopularityConfig:
    """How popularity counts become scores."""

    name: str = "popularity"
    log_counts: bool = True  # score = log(1 + count) instead of the raw count


class Popularity(RankingModel):
    """Most-popular baseline (see module docstring)."""

    Config = PopularityConfig
    input_kind = "none"
    dot_product_scores = False

    def __init__(self, config: PopularityConfig, shape: RankingShape) -> None:
        super().__init__()
        self.config = config
        self.shape = shape
        self.hidden_dim = 1
        self.register_buffer("counts", torch.zeros(shape.n_items))

    def fit(self, train: InteractionLists) -> None:
        """Count each item's training interactions (repeats count every time)."""
        assert len(train.items) == 0 or int(train.items.max()) < self.shape.n_items, (
            f"item id {int(train.items.max())} >= n_items {self.shape.n_items}")
        counts = torch.bincount(train.items, minlength=self.shape.n_items)  # (I,)
        self.counts.copy_(counts.to(self.counts))

    def forward(self, batch: dict[str, torch.Tensor]) -> RankingOutput:
        user = batch["user"]
        return RankingOutput(torch.zeros(len(user), 1, device=user.device), self, {})  # (B, 1) nothing per user

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """(n, 1) each item's score (not an embedding: popularity does not score by dot product)."""
        scores = torch.log1p(self.counts) if self.config.log_counts else self.counts  # (I,)
        return scores[items].unsqueeze(-1)

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        scores = self.item_vectors(items).squeeze(-1)  # (n,) or (B, n)
        return scores.expand(len(state), -1) if items.dim() == 1 else scores
