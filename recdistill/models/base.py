"""The contract every rating model follows, so any model can be teacher or student.

A rating batch (built by `recdistill.data.batching`) holds rows of time-ordered slots:
    seq_items    (B, S)  item id + 1 per slot, 0 = empty
    seq_ratings  (B, S)  rating class + 1 of visible slots, 0 elsewhere (never a target's own)
    seq_visible  (B, S)  True where later slots of the row may read this slot (item and rating)
    seq_target   (B, S)  True where the slot's rating is to be predicted
and, flattened over the target slots in row-major order (M targets):
    index        (M,)    row of the target interaction in its split
    user, item   (M,)    internal ids of the target interaction
    rating       (M,)    true rating, float (on the data's rating scale)
    label        (M,)    true class, long in 0..C-1 (class c is rating `DataShape.class_values()[c]`)
A model predicts each target only from the visible slots *before* it in its row.
"""

from __future__ import annotations

import abc

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from recdistill.models.side_inputs import SideInputs


class RatingOutput(NamedTuple):
    """What a rating model returns for a batch."""

    logits: torch.Tensor  # (M, C) scores over rating classes, one row per target
    rating: torch.Tensor  # (M,) point estimate of the rating, used for MAE and RMSE
    hidden: torch.Tensor  # (M, D) the representation that feature distillation reads


@dataclass
class DataShape:
    """Sizes a model needs from the data at construction time."""

    n_users: int
    n_items: int
    n_classes: int = 5
    history_length: int = 32
    rating_mean: float = 3.0  # mean training rating, the starting point of bias models
    rating_values: tuple[float, ...] = ()  # the rating of each class (the data's scale); () = 1..n_classes

    def class_values(self) -> torch.Tensor:
        """(C,) float32 rating of each class, lowest first."""
        if self.rating_values:
            assert len(self.rating_values) == self.n_classes, (
                f"{len(self.rating_values)} rating values for {self.n_classes} classes")
            return torch.tensor(self.rating_values, dtype=torch.float32)
        return torch.arange(1, self.n_classes + 1, dtype=torch.float32)


class RatingModel(SideInputs, nn.Module, abc.ABC):
    """Base class: `forward(batch) -> RatingOutput` and `loss(batch, output) -> named terms`.

    `adapts_per_user`: predictions adapt to each user's readable ratings at prediction time
    (meta-learned models; `transfer=meta` needs one)."""

    hidden_dim: int
    adapts_per_user: bool = False

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor]) -> RatingOutput:
        """Outputs for the batch's target slots."""

    @abc.abstractmethod
    def loss(self, batch: dict[str, torch.Tensor], output: RatingOutput) -> dict[str, torch.Tensor]:
        """The model's own supervised loss terms on ground truth (unweighted)."""

    def represent(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden state that feature distillation reads, (M, hidden_dim)."""
        return self.forward(batch).hidden
