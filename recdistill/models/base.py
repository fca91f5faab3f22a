"""The contract every rating model follows, so any model can be teacher or student.

A rating batch is a dict of tensors (built by `recdistill.data.batching`):
    index        (B,)    row of the target interaction in its split
    user, item   (B,)    internal ids of the target interaction
    rating       (B,)    true rating, float (1..n_classes)
    label        (B,)    true class, long (rating - 1)
    hist_items   (B, L)  the user's visible earlier items, item id + 1, 0 = padding (left-padded)
    hist_ratings (B, L)  their ratings as class + 1, 0 = padding
    hist_mask    (B, L)  True where a history slot holds an interaction
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn


class RatingOutput(NamedTuple):
    """What a rating model returns for a batch."""

    logits: torch.Tensor  # (B, C) scores over rating classes
    rating: torch.Tensor  # (B,) point estimate of the rating, used for MAE and RMSE
    hidden: torch.Tensor  # (B, D) the representation that feature distillation reads


@dataclass
class DataShape:
    """Sizes a model needs from the data at construction time."""

    n_users: int
    n_items: int
    n_classes: int = 5
    history_length: int = 32
    rating_mean: float = 3.0  # mean training rating, the starting point of bias models


class RatingModel(nn.Module):
    """Base class: `forward(batch) -> RatingOutput` and `loss(batch, output) -> named terms`."""

    hidden_dim: int

    def forward(self, batch: dict[str, torch.Tensor]) -> RatingOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, batch: dict[str, torch.Tensor], output: RatingOutput) -> dict[str, torch.Tensor]:
        """The model's own supervised loss terms on ground truth (unweighted)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def represent(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden state that feature distillation reads, (B, hidden_dim)."""
        return self.forward(batch).hidden
