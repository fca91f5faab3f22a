"""A Transformer that reads a user's recent rated history and predicts the rating of a target item.

Each history slot is one token: item embedding + rating embedding + position embedding. The target
item is the last token, marked with a dedicated "unknown rating" embedding; its output state is the
model's hidden representation and feeds a classifier over the rating classes. With `text_dim > 0`
the item embedding also carries a projection of frozen pretrained text embeddings of the item
(the teacher's knowledge from language-model pretraining).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recdistill.models.base import DataShape, RatingModel, RatingOutput


@dataclass
class RatingTransformerConfig:
    """Architecture of a rating Transformer; the teacher and student differ only in these sizes."""

    name: str = "rating_transformer"
    dim: int = 32  # width of every token
    n_layers: int = 1  # Transformer encoder blocks
    n_heads: int = 2  # attention heads per block
    ff_mult: int = 2  # feed-forward width = ff_mult * dim
    dropout: float = 0.1
    text_dim: int = 0  # size of pretrained item text embeddings; 0 = no text input
    label_smoothing: float = 0.0


class RatingTransformer(RatingModel):
    """History-conditioned rating classifier (see module docstring)."""

    Config = RatingTransformerConfig

    def __init__(self, config: RatingTransformerConfig, shape: DataShape) -> None:
        super().__init__()
        assert config.dim % config.n_heads == 0, f"dim {config.dim} must divide by n_heads {config.n_heads}"
        self.config = config
        self.shape = shape
        self.hidden_dim = config.dim
        dim = config.dim
        self.item_embedding = nn.Embedding(shape.n_items + 1, dim, padding_idx=0)  # 0 = padding
        # rating tokens: 0 = padding, 1..C = observed class, C + 1 = the target's unknown rating
        self.rating_embedding = nn.Embedding(shape.n_classes + 2, dim, padding_idx=0)
        self.position_embedding = nn.Embedding(shape.history_length + 1, dim)
        self.register_buffer("text_embeddings", torch.zeros(shape.n_items + 1, config.text_dim))
        self.text_projection = nn.Linear(config.text_dim, dim) if config.text_dim > 0 else None
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=config.n_heads,
            dim_feedforward=config.ff_mult * dim,
            dropout=config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(dim, shape.n_classes)
        self.register_buffer("class_values", torch.arange(1, shape.n_classes + 1, dtype=torch.float32))
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        nn.init.normal_(self.rating_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def set_text_embeddings(self, embeddings: torch.Tensor) -> None:
        """Install the frozen item text embeddings, (n_items, text_dim), row i = internal item i."""
        expected = (self.shape.n_items, self.config.text_dim)
        assert tuple(embeddings.shape) == expected, f"text embeddings {tuple(embeddings.shape)} != {expected}"
        self.text_embeddings[1:] = embeddings.to(self.text_embeddings)

    def embed_items(self, item_tokens: torch.Tensor) -> torch.Tensor:
        """Embed item tokens (id + 1, 0 = padding), any shape (...,) -> (..., D)."""
        vectors = self.item_embedding(item_tokens)
        if self.text_projection is not None:
            vectors = vectors + self.text_projection(self.text_embeddings[item_tokens])
        return vectors

    def forward(self, batch: dict[str, torch.Tensor]) -> RatingOutput:
        hist_items, hist_ratings, hist_mask = batch["hist_items"], batch["hist_ratings"], batch["hist_mask"]
        batch_size, length = hist_items.shape
        target_items = (batch["item"] + 1).unsqueeze(1)  # (B, 1)
        target_rating = torch.full_like(target_items, self.shape.n_classes + 1)
        items = torch.cat([hist_items, target_items], dim=1)  # (B, L + 1)
        ratings = torch.cat([hist_ratings, target_rating], dim=1)  # (B, L + 1)
        positions = torch.arange(length + 1, device=items.device)  # (L + 1,)
        tokens = self.embed_items(items) + self.rating_embedding(ratings) + self.position_embedding(positions)
        tokens = self.dropout(tokens)  # (B, L + 1, D)
        target_valid = torch.ones(batch_size, 1, dtype=torch.bool, device=items.device)
        padding = ~torch.cat([hist_mask, target_valid], dim=1)  # (B, L + 1), True = ignore
        states = self.encoder(tokens, src_key_padding_mask=padding)  # (B, L + 1, D)
        hidden = self.final_norm(states[:, -1])  # (B, D)
        logits = self.classifier(self.dropout(hidden))  # (B, C)
        expected = logits.softmax(dim=-1) @ self.class_values  # (B,)
        return RatingOutput(logits=logits, rating=expected, hidden=hidden)

    def loss(self, batch: dict[str, torch.Tensor], output: RatingOutput) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(output.logits, batch["label"], label_smoothing=self.config.label_smoothing)
        return {"ce": ce}
