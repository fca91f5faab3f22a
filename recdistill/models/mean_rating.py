"""Mean-rating baselines: the global mean, or each item's mean rating (the global mean for items
without ratings), fitted by counting. The floor every cold-start method must clear.

As a rating model it predicts the mean as its point estimate; its class logits are a discretised
Gaussian around it (unit scale), so the argmax is the class nearest to the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from recdistill.errors import ConfigError
from recdistill.models.base import DataShape, RatingModel, RatingOutput
from recdistill.utils.config_checks import bounded

BY = ("global", "item")


@dataclass
class MeanRatingConfig:
    """Which mean to predict."""

    name: str = "mean_rating"
    # global: one mean for everything | item: each item's mean (global mean when unseen)
    by: str = bounded("item", choices=BY)
    shrinkage: float = bounded(0.0, ge=0)  # item means pulled toward the global mean: (sum + s * mean) / (n + s)


class MeanRating(RatingModel):
    """Predicts a fitted mean rating; no learnable parameters (see module docstring)."""

    Config = MeanRatingConfig
    fitted_by_counting = True

    def __init__(self, config: MeanRatingConfig, shape: DataShape) -> None:
        super().__init__()
        if config.by not in BY:
            raise ConfigError(f"mean_rating.by={config.by!r} unknown; valid: {list(BY)}")
        self.config, self.shape, self.hidden_dim = config, shape, 1
        self.register_buffer("item_means", torch.full((shape.n_items,), float(shape.rating_mean)))
        self.register_buffer("class_values", shape.class_values())

    def fit_ratings(self, ratings: pd.DataFrame) -> None:
        """Fit the means from a table with item and rating columns (every rating the model may know)."""
        mean = float(ratings["rating"].mean())
        if self.config.by == "global":
            self.item_means.fill_(mean)
            return
        items = torch.from_numpy(ratings["item"].to_numpy().copy()).long()
        values = torch.from_numpy(ratings["rating"].to_numpy().copy()).float()
        sums = torch.zeros(self.shape.n_items).index_add_(0, items, values)  # (I,)
        counts = torch.bincount(items, minlength=self.shape.n_items).float()  # (I,)
        shrink = self.config.shrinkage
        self.item_means.copy_(torch.where(counts > 0, (sums + shrink * mean) / (counts + shrink).clamp(min=1e-9),
                                          torch.tensor(mean)))

    def forward(self, batch: dict[str, torch.Tensor]) -> RatingOutput:
        rating = self.item_means[batch["item"]]  # (M,)
        logits = -((self.class_values - rating.unsqueeze(-1)) ** 2) / 2  # (M, C)
        return RatingOutput(logits=logits, rating=rating, hidden=rating.unsqueeze(-1))

    def loss(self, batch: dict[str, torch.Tensor], output: RatingOutput) -> dict[str, torch.Tensor]:
        raise ConfigError("mean_rating is fitted by counting, not trained; use it as a baseline")
