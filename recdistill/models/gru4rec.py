"""GRU4Rec (Hidasi et al. 2016) in the next-item cross-entropy form of RecBole: item embeddings
-> dropout -> a GRU over the user's items -> a linear map back to the embedding size, scored by dot
product with the item embedding table.

Batches are left-padded, but a GRU's state would drift over the empty slots. So each row is
rotated to put its items first (right-padded), run through the GRU -- which reads left to right,
so an item's output never sees the padding after it -- and rotated back. A slot's output thus
depends only on the items up to it, whatever the padding; empty slots output zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recdistill.models.ranking_base import RankingShape
from recdistill.utils.config_checks import bounded
from recdistill.models.sequence_losses import NEXT_ITEM_LOSSES, check_loss_name
from recdistill.models.sequential_base import SequentialRanker


@dataclass
class GRU4RecConfig:
    """Architecture and training loss of GRU4Rec (defaults: RecBole 1.2.1's)."""

    name: str = "gru4rec"
    dim: int = bounded(64, ge=1)  # item embedding size, and the size of the state that scores items
    gru_dim: int = bounded(128, ge=1)  # hidden size of the GRU
    n_layers: int = bounded(1, ge=1)  # stacked GRU layers
    dropout: float = bounded(0.3, ge=0, lt=1)  # on the input embeddings
    # ce: full softmax | sampled: softmax over n_negatives shared items | bce: one negative per slot
    loss: str = bounded("ce", choices=NEXT_ITEM_LOSSES)
    n_negatives: int = bounded(100, ge=1)  # sampled loss only: uniformly drawn items shared by the batch


def rotate(values: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each row of values (B, L, ...) left by shift (B,) slots: out[b, j] = values[b, (j + shift[b]) % L]."""
    length = values.shape[1]
    index = (torch.arange(length, device=values.device)[None, :] + shift[:, None]) % length  # (B, L)
    index = index.view(*index.shape, *([1] * (values.dim() - 2))).expand_as(values)
    return values.gather(1, index)


class GRU4Rec(SequentialRanker):
    """Recurrent next-item recommender (see module docstring)."""

    Config = GRU4RecConfig

    def __init__(self, config: GRU4RecConfig, shape: RankingShape) -> None:
        super().__init__()
        check_loss_name(config.loss)
        self.config = config
        self.shape = shape
        self.hidden_dim = config.dim
        self.item_embedding = nn.Embedding(shape.n_items + 1, config.dim, padding_idx=0)  # 0 = empty slot
        self.drop = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.dim, config.gru_dim, num_layers=config.n_layers, batch_first=True)
        self.projection = nn.Linear(config.gru_dim, config.dim)
        nn.init.xavier_normal_(self.item_embedding.weight)
        self.item_embedding.weight.data[0].zero_()

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """Per-slot outputs (B, L, D) of left-padded item tokens seq (B, L) (id + 1, 0 = empty)."""
        padding = (seq == 0).sum(1)  # (B,) empty slots at the left of each row
        items_first = rotate(seq, padding)  # (B, L) right-padded
        outputs, _ = self.gru(self.drop(self.item_embedding(items_first)))  # (B, L, G)
        slots = rotate(self.projection(outputs), -padding)  # (B, L, D) back to the left-padded layout
        return slots.masked_fill((seq == 0).unsqueeze(-1), 0.0)  # an empty slot's output is zero, never read
