"""BPR matrix factorisation (Rendle et al. 2009): score(u, i) = p_u . q_i, trained so that each
training item outranks items sampled among those the user has not interacted with.

The BPR and L2 terms are module functions so LightGCN, which trains on the same objective, uses
them too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recdistill.models.ranking_base import RankingModel, RankingOutput, RankingShape
from recdistill.utils.config_checks import bounded


@dataclass
class BPRMFConfig:
    """Size, regularisation and negative sampling of BPR-MF."""

    name: str = "bpr_mf"
    dim: int = bounded(64, ge=1)  # latent factors per user and item
    reg: float = bounded(1e-4, ge=0)  # L2 weight on the batch's user, positive and negative factors
    n_negatives: int = bounded(1, ge=1)  # negatives per training pair; read by the task when it builds `pairs` batches
    init_std: float = bounded(0.1, gt=0)  # factors start as N(0, init_std^2) (Topology Distillation's code: 0.01)


def bpr_loss(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """-mean log sigmoid(s_pos - s_neg) for user (B, D), pos (B, D), neg (B, N, D)."""
    positive = (user * pos).sum(-1)  # (B,)
    negative = torch.einsum("bd,bnd->bn", user, neg)  # (B, N)
    return -F.logsigmoid(positive[:, None] - negative).mean()


def l2_penalty(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Per-row sum of squared norms of the user, the positive and every negative, averaged over rows."""
    return (user.pow(2).sum(-1) + pos.pow(2).sum(-1) + neg.pow(2).sum((-2, -1))).mean()


class BPRMF(RankingModel):
    """BPR matrix factorisation (see module docstring)."""

    Config = BPRMFConfig
    input_kind = "pairs"

    def __init__(self, config: BPRMFConfig, shape: RankingShape) -> None:
        super().__init__()
        self.config = config
        self.shape = shape
        self.hidden_dim = config.dim
        self.user_factors = nn.Embedding(shape.n_users, config.dim)
        self.item_factors = nn.Embedding(shape.n_items, config.dim)
        nn.init.normal_(self.user_factors.weight, std=config.init_std)
        nn.init.normal_(self.item_factors.weight, std=config.init_std)

    def forward(self, batch: dict[str, torch.Tensor]) -> RankingOutput:
        return RankingOutput(self.user_factors(batch["user"]), self, {})  # (B, D)

    def loss(self, batch: dict[str, torch.Tensor], output: RankingOutput) -> dict[str, torch.Tensor]:
        user = output.state  # (B, D)
        pos, neg = self.item_factors(batch["pos"]), self.item_factors(batch["neg"])  # (B, D), (B, N, D)
        return {"bpr": bpr_loss(user, pos, neg), "l2": self.config.reg * l2_penalty(user, pos, neg)}

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_factors(items)

    def pair_negatives(self) -> int:
        return self.config.n_negatives

    def item_embedding_table(self) -> tuple[nn.Embedding, int]:
        return self.item_factors, 0
