"""SASRec (Kang & McAuley 2018): a causal self-attention encoder over the user's latest items.

Each slot holds an item embedding plus a learned position embedding; blocks let every slot attend
to itself and earlier non-empty slots; the slot's output scores the next item by dot product with
the same item embedding table that embeds the input (tied, as in the paper and RecBole).

Two layouts (`layer_norm`): `pre` (the authors' code) normalises each sub-layer's input and the
final output; `post` (RecBole 1.2.1) normalises the embeddings and each residual sum, and
initialises every linear and embedding weight from normal(0, 0.02) with zero biases.

Batches are left-padded. Positions are counted from the row's first non-empty slot (as RecBole
does with its right-padded rows), and padded keys are masked, so a slot's output depends only on
the items up to it -- not on how much padding precedes them. A padded slot attends to itself
alone (a fully masked attention row would give NaN); its output is never read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recdistill.errors import ConfigError
from recdistill.models.ranking_base import RankingShape
from recdistill.models.sequence_losses import NEXT_ITEM_LOSSES, check_loss_name
from recdistill.models.sequential_base import SequentialRanker
from recdistill.utils.config_checks import bounded, divides, value_rules

#: Valid values of `layer_norm`.
LAYER_NORMS = ("pre", "post")


@value_rules(divides("n_heads", "dim"))
@dataclass
class SASRecConfig:
    """Architecture and training loss of SASRec (defaults: RecBole 1.2.1's)."""

    name: str = "sasrec"
    dim: int = bounded(64, ge=1)  # width of item embeddings and every slot
    n_layers: int = bounded(2, ge=1)  # self-attention blocks
    n_heads: int = bounded(2, ge=1)  # attention heads per block (must divide dim)
    ff_mult: int = bounded(4, ge=1)  # feed-forward width = ff_mult * dim
    dropout: float = bounded(0.5, ge=0, lt=1)  # on embeddings, attention weights and block outputs
    # ce: full softmax | sampled: softmax over n_negatives shared items | bce: one negative per slot
    loss: str = bounded("ce", choices=NEXT_ITEM_LOSSES)
    n_negatives: int = bounded(100, ge=1)  # sampled loss only: uniformly drawn items shared by the batch
    # pre: the authors' code | post: RecBole's (see the module docstring)
    layer_norm: str = bounded("pre", choices=LAYER_NORMS)


class CausalBlock(nn.Module):
    """Masked multi-head self-attention, then a position-wise feed-forward; LayerNorm before each
    (`post=False`) or after each residual sum (`post=True`)."""

    def __init__(self, dim: int, n_heads: int, ff_mult: int, dropout: float, post: bool = False) -> None:
        super().__init__()
        self.n_heads, self.dropout, self.post = n_heads, dropout, post
        self.norm_attention = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, states: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """states (B, L, D); allowed (B, 1, L, L) query slot may read key slot."""
        batch, length, dim = states.shape
        qkv = self.qkv(states if self.post else self.norm_attention(states))  # (B, L, 3D)
        query, key, value = qkv.view(batch, length, 3, self.n_heads, dim // self.n_heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, L, Dh)
        states = states + self.drop(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        if self.post:
            states = self.norm_attention(states)
            return self.norm_ff(states + self.drop(self.ff(states)))
        return states + self.drop(self.ff(self.norm_ff(states)))


class SASRec(SequentialRanker):
    """Self-attentive sequential recommender (see module docstring)."""

    Config = SASRecConfig

    def __init__(self, config: SASRecConfig, shape: RankingShape) -> None:
        super().__init__()
        assert config.dim % config.n_heads == 0, f"dim {config.dim} must divide by n_heads {config.n_heads}"
        check_loss_name(config.loss)
        if config.layer_norm not in LAYER_NORMS:
            raise ConfigError(f"sasrec layer_norm must be one of {list(LAYER_NORMS)}, got {config.layer_norm!r}")
        post = config.layer_norm == "post"
        self.config = config
        self.shape = shape
        self.hidden_dim = config.dim
        self.item_embedding = nn.Embedding(shape.n_items + 1, config.dim, padding_idx=0)  # 0 = empty slot
        self.position_embedding = nn.Embedding(shape.max_length, config.dim)
        self.blocks = nn.ModuleList(
            CausalBlock(config.dim, config.n_heads, config.ff_mult, config.dropout, post)
            for _ in range(config.n_layers)
        )
        # pre: normalise the last block's output; post: the blocks end normalised, the embeddings are
        self.embedding_norm = nn.LayerNorm(config.dim) if post else nn.Identity()
        self.final_norm = nn.Identity() if post else nn.LayerNorm(config.dim)
        self.drop = nn.Dropout(config.dropout)
        for embedding in (self.item_embedding, self.position_embedding):
            nn.init.normal_(embedding.weight, std=0.02)
        if post:
            for module in self.blocks.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)
        self.item_embedding.weight.data[0].zero_()

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """Per-slot outputs (B, L, D) of left-padded item tokens seq (B, L) (id + 1, 0 = empty)."""
        length = seq.shape[1]
        assert length <= self.shape.max_length, f"seq has {length} slots, the model at most {self.shape.max_length}"
        filled = seq > 0  # (B, L)
        position = (filled.long().cumsum(1) - 1).clamp(min=0)  # (B, L) 0 at the first non-empty slot
        states = self.item_embedding(seq) + self.position_embedding(position) * filled.unsqueeze(-1)  # (B, L, D)
        states = self.drop(self.embedding_norm(states))
        slots = torch.arange(length, device=seq.device)
        causal = slots[None, :] <= slots[:, None]  # (L, L) key not after query
        allowed = (causal & filled[:, None, :]) | torch.eye(length, dtype=torch.bool, device=seq.device)  # (B, L, L)
        allowed = allowed.unsqueeze(1)  # (B, 1, L, L) shared by the heads
        for block in self.blocks:
            states = block(states, allowed)
        return self.final_norm(states)  # (B, L, D)
