"""What every next-item sequence model shares: the state is the output after the latest item, the
loss is next-item prediction at every slot, and items are scored against the (tied) input table."""

from __future__ import annotations

import abc

import torch
from torch import nn

from recdistill.models.ranking_base import RankingModel, RankingOutput
from recdistill.models.sequence_losses import next_item_loss


class SequentialRanker(RankingModel):
    """Base of SASRec and GRU4Rec: subclasses define `item_embedding` (row 0 = empty slot) and `encode`."""

    input_kind = "sequences"
    item_embedding: nn.Embedding

    @abc.abstractmethod
    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """Per-slot outputs (B, L, D) of left-padded item tokens seq (B, L) (id + 1, 0 = empty)."""

    def forward(self, batch: dict[str, torch.Tensor]) -> RankingOutput:
        slots = self.encode(batch["seq"])  # (B, L, D)
        return RankingOutput(slots[:, -1], self, {"slots": slots})  # state: after the latest item, (B, D)

    def loss(self, batch: dict[str, torch.Tensor], output: RankingOutput) -> dict[str, torch.Tensor]:
        table = self.item_embedding.weight[1:]  # (I, D) row i = item i
        return next_item_loss(output.extras["slots"], batch["target"], table, self.config.loss,
                              self.config.n_negatives)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_embedding(items + 1)

    def item_embedding_table(self) -> tuple[nn.Embedding, int]:
        return self.item_embedding, 1  # row 0 is the empty slot
