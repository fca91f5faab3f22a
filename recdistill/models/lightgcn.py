"""LightGCN (He et al. 2020): user and item embeddings smoothed over the user-item graph.

The ego (layer-0) embeddings E0 of all users and items are propagated K times over the
symmetric-normalised bipartite adjacency A = D^-1/2 [[0, R], [R^T, 0]] D^-1/2 of the training
interactions R (binarised: a repeated interaction is one edge): E_{k+1} = A E_k. The final
embeddings are the mean of E_0 .. E_K and score by dot product. Training is BPR on the final
embeddings plus L2 on the batch's ego embeddings, as in the paper.

The graph is not a weight: `fit(train)` builds it (the pipeline calls `model.fit(train lists)` on
every new model and again after loading a checkpoint) and it is stored as a non-persistent buffer,
so checkpoints hold only the embeddings and the graph moves with `.to(device)`.

Propagation runs once per forward in training mode (the weights change every step) and is reused
by `item_vectors` / `score_items` until the next forward. Outside training with gradients off
(evaluation, extraction) it is computed once and cached while the weights are unchanged; the cache
is keyed on the weights' version counters, so `load_state_dict` or an optimiser step invalidates it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recdistill.data.ranking_data import InteractionLists
from recdistill.models.bpr_mf import bpr_loss, l2_penalty
from recdistill.models.ranking_base import RankingModel, RankingOutput, RankingShape
from recdistill.utils.config_checks import bounded


@dataclass
class LightGCNConfig:
    """Size, depth, regularisation and negative sampling of LightGCN."""

    name: str = "lightgcn"
    dim: int = bounded(64, ge=1)  # embedding size of every user and item
    n_layers: int = bounded(2, ge=0)  # propagation steps over the graph (0 = plain BPR-MF)
    reg: float = bounded(1e-4, ge=0)  # L2 weight on the batch's ego (layer-0) user, positive and negative embeddings
    n_negatives: int = bounded(1, ge=1)  # negatives per training pair; read by the task when it builds `pairs` batches


def normalised_adjacency(train: InteractionLists, n_users: int, n_items: int,
                         device: torch.device | str) -> torch.Tensor:
    """The sparse (U + I, U + I) symmetric-normalised bipartite adjacency of the training interactions."""
    assert train.n_users == n_users, f"training lists have {train.n_users} users, the model {n_users}"
    users, items = train.flat(torch.arange(n_users))  # (nnz,) each
    assert len(items) == 0 or int(items.max()) < n_items, f"item id {int(items.max())} >= n_items {n_items}"
    pairs = torch.unique(users * n_items + items)  # (E,) binarised edges
    users, items = pairs // n_items, pairs % n_items
    user_degree = torch.bincount(users, minlength=n_users).float()  # (U,)
    item_degree = torch.bincount(items, minlength=n_items).float()  # (I,)
    weight = (user_degree[users] * item_degree[items]).rsqrt()  # (E,) 1 / sqrt(d_u d_i)
    rows = torch.cat([users, items + n_users])  # (2E,) both directions of each edge
    cols = torch.cat([items + n_users, users])  # (2E,)
    size = n_users + n_items
    adjacency = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.cat([weight, weight]), (size, size),
                                        check_invariants=False)
    return adjacency.coalesce().to(device)


class LightGCN(RankingModel):
    """LightGCN (see module docstring)."""

    Config = LightGCNConfig
    input_kind = "pairs"

    def __init__(self, config: LightGCNConfig, shape: RankingShape) -> None:
        super().__init__()
        assert config.n_layers >= 0, f"n_layers must be >= 0, got {config.n_layers}"
        self.config = config
        self.shape = shape
        self.hidden_dim = config.dim
        self.user_embedding = nn.Embedding(shape.n_users, config.dim)
        self.item_embedding = nn.Embedding(shape.n_items, config.dim)
        nn.init.normal_(self.user_embedding.weight, std=0.1)
        nn.init.normal_(self.item_embedding.weight, std=0.1)
        self.register_buffer("adjacency", None, persistent=False)
        self._cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None  # (key, users (U, D), items (I, D))

    def fit(self, train: InteractionLists) -> None:
        """Build the training graph: the single entry point the pipeline calls before training and after loading."""
        self.set_graph(train)

    def set_graph(self, train: InteractionLists) -> None:
        """Install the normalised adjacency of `train` on the model's device."""
        device = self.user_embedding.weight.device
        self.adjacency = normalised_adjacency(train, self.shape.n_users, self.shape.n_items, device)
        self._cache = None

    def train(self, mode: bool = True) -> "LightGCN":
        self._cache = None  # a mode switch drops propagated tables (and any autograd graph they hold)
        return super().train(mode)

    def _key(self) -> tuple:
        weights = (self.user_embedding.weight, self.item_embedding.weight)
        return (id(self.adjacency), torch.is_grad_enabled(),
                *[(w.data_ptr(), w.device, w._version) for w in weights])

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (layer-mean) user (U, D) and item (I, D) embeddings."""
        assert self.adjacency is not None, "LightGCN has no graph: call model.fit(train lists) first"
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])  # (U + I, D)
        layers, current = [ego], ego
        for _ in range(self.config.n_layers):
            current = torch.sparse.mm(self.adjacency, current)  # (U + I, D)
            layers.append(current)
        final = torch.stack(layers).mean(0)  # (U + I, D)
        return final[:self.shape.n_users], final[self.shape.n_users:]

    def _tables(self, refresh: bool) -> tuple[torch.Tensor, torch.Tensor]:
        key = self._key()
        if refresh or self._cache is None or self._cache[0] != key:
            self._cache = (key, *self.propagate())
        return self._cache[1], self._cache[2]

    def forward(self, batch: dict[str, torch.Tensor]) -> RankingOutput:
        users, items = self._tables(refresh=self.training)
        return RankingOutput(users[batch["user"]], self, {"item_table": items})  # (B, D)

    def loss(self, batch: dict[str, torch.Tensor], output: RankingOutput) -> dict[str, torch.Tensor]:
        items = output.extras["item_table"]  # (I, D)
        bpr = bpr_loss(output.state, items[batch["pos"]], items[batch["neg"]])
        ego = (self.user_embedding(batch["user"]), self.item_embedding(batch["pos"]), self.item_embedding(batch["neg"]))
        return {"bpr": bpr, "l2": self.config.reg * l2_penalty(*ego)}

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self._tables(refresh=False)[1][items]

    def pair_negatives(self) -> int:
        return self.config.n_negatives

    def item_embedding_table(self) -> tuple[nn.Embedding, int]:
        return self.item_embedding, 0  # the layer-0 (ego) vectors; propagation re-reads them
