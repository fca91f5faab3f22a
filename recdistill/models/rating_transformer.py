"""A causal Transformer that reads a user's earlier rated interactions and predicts a rating.

Each slot's query stream carries only its item; the key/value stream adds the
slot's rating. Attention from slot t reaches only *visible* slots j < t, so a slot's own rating —
and any other target's — never informs its prediction, while one pass over a training chunk
predicts every slot from the ones before it. A learned start slot gives every row something to
attend to. Order enters only as a learned per-head bias on recency — how many readable slots lie
between key and query — with no absolute positions, so a target's prediction depends on its
history alone, not on where the row puts it: a training chunk, an evaluation window and a
per-user evaluation row with the same history give the same output. With `text_dim > 0` item
embeddings also carry a projection of frozen pretrained text embeddings (the teacher's knowledge
from language-model pretraining).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recdistill.models.base import DataShape, RatingModel, RatingOutput
from recdistill.utils.config_checks import bounded, divides, value_rules


@value_rules(divides("n_heads", "dim"))
@dataclass
class RatingTransformerConfig:
    """Architecture of a rating Transformer; the teacher and student differ only in these sizes."""

    name: str = "rating_transformer"
    dim: int = bounded(32, ge=1)  # width of every slot
    n_layers: int = bounded(1, ge=1)  # attention blocks
    n_heads: int = bounded(2, ge=1)  # attention heads per block
    ff_mult: int = bounded(2, ge=1)  # feed-forward width = ff_mult * dim
    dropout: float = bounded(0.1, ge=0, lt=1)  # on embeddings, attention weights and block outputs
    text_dim: int = bounded(0, ge=0)  # size of pretrained item text embeddings; 0 = no text input
    label_smoothing: float = bounded(0.0, ge=0, le=1)  # of the rating-class cross-entropy
    # weight of a second base term, the squared error of the expected rating (in rating units^2):
    # cross-entropy alone calibrates the classes, not the mean that MAE and RMSE read
    rating_mse_weight: float = bounded(0.0, ge=0)


class EarlierSlotsBlock(nn.Module):
    """Pre-norm block: attention from each slot to the allowed earlier slots, then feed-forward."""

    def __init__(self, dim: int, n_heads: int, ff_mult: int, dropout: float, max_distance: int) -> None:
        super().__init__()
        self.distance_bias = nn.Parameter(torch.zeros(n_heads, max_distance + 1))  # index 0 = start slot
        self.blocked = max_distance + 1  # the bias index of a key the query may not read (-inf)
        self.n_heads = n_heads
        self.dropout = dropout
        self.norm_query = nn.LayerNorm(dim)
        self.norm_memory = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, states: torch.Tensor, ratings: torch.Tensor, bias_index: torch.Tensor) -> torch.Tensor:
        """states, ratings (B, S, D); bias_index (B, S, S): the distance bias of (query, key), or
        `self.blocked` where the query may not read the key."""
        batch, length, dim = states.shape
        # one index_select from the biases padded with a -inf column builds the additive mask: an
        # advanced-index gather then a masked fill over (B, H, S, S) cost 4x the attention itself
        biases = F.pad(self.distance_bias, (0, 1), value=float("-inf"))  # (H, max_distance + 2)
        mask = biases.index_select(1, bias_index.flatten()).view(self.n_heads, *bias_index.shape).transpose(0, 1)
        heads = lambda x: x.view(batch, length, self.n_heads, dim // self.n_heads).transpose(1, 2)  # noqa: E731
        query = heads(self.query(self.norm_query(states)))  # (B, H, S, Dh)
        key, value = self.key_value(self.norm_memory(states + ratings)).chunk(2, dim=-1)  # (B, S, D) each
        attended = F.scaled_dot_product_attention(
            query, heads(key), heads(value), attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, S, Dh)
        states = states + self.drop(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        return states + self.drop(self.ff(self.norm_ff(states)))


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
        self.item_embedding = nn.Embedding(shape.n_items + 1, dim, padding_idx=0)  # 0 = empty slot
        self.rating_embedding = nn.Embedding(shape.n_classes + 1, dim, padding_idx=0)  # 0 = not readable
        self.start = nn.Parameter(torch.zeros(dim))
        self.register_buffer("text_embeddings", torch.zeros(shape.n_items + 1, config.text_dim))
        self.text_projection = nn.Linear(config.text_dim, dim) if config.text_dim > 0 else None
        padding_row = torch.zeros(shape.n_items + 1, 1, dtype=torch.bool)
        padding_row[0] = True
        self.register_buffer("_padding_row", padding_row, persistent=False)
        self.blocks = nn.ModuleList(
            EarlierSlotsBlock(dim, config.n_heads, config.ff_mult, config.dropout, shape.history_length + 1)
            for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(dim, shape.n_classes)
        self.register_buffer("class_values", shape.class_values())
        for embedding in (self.item_embedding, self.rating_embedding):
            nn.init.normal_(embedding.weight, std=0.02)
            if embedding.padding_idx is not None:
                embedding.weight.data[embedding.padding_idx].zero_()

    def side_inputs(self) -> dict[str, bool]:
        """Item text embeddings, required when `text_dim > 0`."""
        return {"item_text": True} if self.config.text_dim > 0 else {}

    def set_side_input(self, kind: str, value: torch.Tensor) -> None:
        """`item_text`: see `set_text_embeddings`."""
        if kind not in self.side_inputs():
            super().set_side_input(kind, value)
        self.set_text_embeddings(value)

    def set_text_embeddings(self, embeddings: torch.Tensor) -> None:
        """Install the frozen item text embeddings, (n_items, text_dim), row i = internal item i."""
        expected = (self.shape.n_items, self.config.text_dim)
        assert tuple(embeddings.shape) == expected, f"text embeddings {tuple(embeddings.shape)} != {expected}"
        self.text_embeddings[1:] = embeddings.to(self.text_embeddings)

    def embed_items(self, item_tokens: torch.Tensor) -> torch.Tensor:
        """Embed item tokens (id + 1, 0 = empty), any shape (...,) -> (..., D)."""
        if self.text_projection is None:
            return self.item_embedding(item_tokens)
        # project the whole (n_items + 1, text_dim) table once: far cheaper than per slot
        table = self.item_embedding.weight + self.text_projection(self.text_embeddings)  # (I + 1, D)
        table = table.masked_fill(self._padding_row, 0.0)
        return F.embedding(item_tokens, table)

    def forward(self, batch: dict[str, torch.Tensor]) -> RatingOutput:
        items, visible = batch["seq_items"], batch["seq_visible"]
        batch_size, length = items.shape
        start = self.start.expand(batch_size, 1, -1)  # (B, 1, D)
        states = torch.cat([start, self.embed_items(items)], dim=1)  # (B, S + 1, D)
        states = self.drop(states)
        ratings = F.pad(self.rating_embedding(batch["seq_ratings"]), (0, 0, 1, 0))  # (B, S + 1, D)
        readable = F.pad(visible, (1, 0), value=True)  # (B, S + 1) the start slot is always readable
        slots = torch.arange(length + 1, device=items.device)
        earlier = slots.unsqueeze(1) > slots.unsqueeze(0)  # (S + 1, S + 1) key strictly before query
        allowed = (earlier & readable.unsqueeze(1)) | (slots == 0)  # (B, S + 1, S + 1)
        readable_so_far = readable.long().cumsum(dim=1)  # (B, S + 1)
        before_query = F.pad(readable_so_far, (1, 0))[:, :-1]  # (B, S + 1) readable slots before each query
        # readable key j < t is the k-th most recent readable slot before t: k = count in [j, t)
        recency = before_query.unsqueeze(2) - readable_so_far.unsqueeze(1) + 1  # (B, S + 1, S + 1)
        recency = recency.clamp(1, self.shape.history_length + 1)
        recency[:, :, 0] = 0  # the start slot has its own bias
        bias_index = torch.where(allowed, recency, self.blocks[0].blocked)  # (B, S + 1, S + 1)
        for block in self.blocks:
            states = block(states, ratings, bias_index)
        hidden = self.final_norm(states[:, 1:][batch["seq_target"]])  # (M, D)
        logits = self.classifier(self.drop(hidden))  # (M, C)
        expected = logits.softmax(dim=-1) @ self.class_values  # (M,)
        return RatingOutput(logits=logits, rating=expected, hidden=hidden)

    def loss(self, batch: dict[str, torch.Tensor], output: RatingOutput) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(output.logits, batch["label"], label_smoothing=self.config.label_smoothing)
        if self.config.rating_mse_weight == 0:
            return {"ce": ce}
        error = output.rating - self.class_values[batch["label"]]  # (M,) expected - true rating
        return {"ce": ce, "mse": self.config.rating_mse_weight * error.pow(2).mean()}
