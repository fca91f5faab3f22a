"""Item-based k-nearest neighbours: an item's score for a user is the sum of its similarities to
the items the user has read.

`fit(train)` computes the cosine similarity between the items' (binarised) user vectors,
sim(i, j) = |U_i & U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink), and keeps for every item j its
`k_neighbors` most similar other items i (its neighbour list). The score of candidate j for a user
is the sum of sim(i, j) over the neighbours i of j found in the user's input `seq` (each distinct
item once). The neighbour lists, (I, k) indices and similarities, are buffers, so a checkpoint
holds the fitted model. Similarities are computed a chunk of target items at a time with sparse
products, and only the nonzero ones are ranked, so memory stays at most I x chunk, never I x I.

The state of a row is its input `seq` itself (B, L) (item ids + 1, 0 = empty), not an embedding.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from recdistill.data.ranking_data import InteractionLists
from recdistill.models.ranking_base import RankingModel, RankingOutput, RankingShape
from recdistill.utils.config_checks import bounded

#: Bound on the (I, chunk) similarity block computed at once while fitting (its nonzeros are stored).
CHUNK_ELEMENTS = 2**24


@dataclass
class ItemKNNConfig:
    """Neighbourhood size and similarity shrinkage of item kNN."""

    name: str = "item_knn"
    k_neighbors: int = bounded(100, ge=1)  # most similar items kept per item
    shrink: float = bounded(0.0, ge=0)  # added to the cosine's denominator: damps similarities of rarely seen items


def sparse_product(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """left @ right for two sparse COO matrices, as a sparse COO matrix."""
    with warnings.catch_warnings():  # torch routes sparse @ sparse through CSR, which warns it is beta
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse.mm(left, right)


def sparse_matrix(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, size: tuple[int, int]
                  ) -> torch.Tensor:
    """A coalesced sparse COO matrix (duplicates summed)."""
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, size, check_invariants=False).coalesce()


class ItemKNN(RankingModel):
    """Item-based kNN (see module docstring)."""

    Config = ItemKNNConfig
    input_kind = "none"
    dot_product_scores = False

    def __init__(self, config: ItemKNNConfig, shape: RankingShape) -> None:
        super().__init__()
        assert config.k_neighbors > 0, f"k_neighbors must be positive, got {config.k_neighbors}"
        assert config.shrink >= 0, f"shrink must be >= 0, got {config.shrink}"
        self.config = config
        self.shape = shape
        self.hidden_dim = shape.max_length
        k = min(config.k_neighbors, shape.n_items)
        self.register_buffer("neighbors", torch.zeros(shape.n_items, k, dtype=torch.long))  # (I, k) ids, any where similarity is 0
        self.register_buffer("similarities", torch.zeros(shape.n_items, k))  # (I, k) 0 = empty neighbour slot

    @torch.no_grad()
    def fit(self, train: InteractionLists) -> None:
        """Compute every item's top-k neighbour list from the training interactions."""
        n_users, n_items = train.n_users, self.shape.n_items
        users, items = train.flat(torch.arange(n_users))  # (nnz,)
        assert len(items) == 0 or int(items.max()) < n_items, f"item id {int(items.max())} >= n_items {n_items}"
        device = self.neighbors.device
        pairs = torch.unique(users * n_items + items).to(device)  # (E,) binarised, sorted by user
        users, items = pairs // n_items, pairs % n_items
        norms = torch.bincount(items, minlength=n_items).float().sqrt()  # (I,) sqrt of users per item
        by_item = torch.argsort(items, stable=True)
        item_sorted = items[by_item]  # (E,) to slice out a chunk of target items
        ones = torch.ones(len(pairs), device=device)
        item_user = sparse_matrix(items, users, ones, (n_items, n_users))  # (I, U)
        self.neighbors.zero_()
        self.similarities.zero_()
        chunk = max(1, CHUNK_ELEMENTS // n_items)
        for start in range(0, n_items, chunk):
            stop = min(start + chunk, n_items)
            lo, hi = torch.searchsorted(item_sorted, torch.tensor([start, stop], device=device)).tolist()
            edges = by_item[lo:hi]  # the chunk's interactions
            user_target = sparse_matrix(users[edges], items[edges] - start, ones[edges], (n_users, stop - start))
            self._keep_top(sparse_product(item_user, user_target), start, norms)

    def _keep_top(self, common: torch.Tensor, start: int, norms: torch.Tensor) -> None:
        """Store the top-k neighbours of targets start.. from their sparse (I, c) shared-user counts."""
        common = common.coalesce()
        neighbor, column = common.indices()  # (M,) nonzero pairs only: cost follows them, not I x c
        target = column + start
        similarity = common.values() / (norms[neighbor] * norms[target] + self.config.shrink).clamp(min=1e-12)
        keep = neighbor != target  # an item is not its own neighbour
        neighbor, target, similarity = neighbor[keep], target[keep], similarity[keep]
        # cosine lies in (0, 1], so one sort of 2 * target + (1 - similarity) groups by target, most similar first
        order = torch.argsort(2 * target.double() + (1 - similarity.double()))
        neighbor, target, similarity = neighbor[order], target[order], similarity[order]
        rank = torch.arange(len(target), device=target.device) - torch.searchsorted(target, target)  # (M,)
        top = rank < self.neighbors.shape[1]
        self.neighbors[target[top], rank[top]] = neighbor[top]
        self.similarities[target[top], rank[top]] = similarity[top]

    def forward(self, batch: dict[str, torch.Tensor]) -> RankingOutput:
        return RankingOutput(batch["seq"], self, {})  # (B, L) the items read, as ids + 1

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """(n, k) each item's neighbour similarities (not an embedding: kNN does not score by dot product)."""
        return self.similarities[items]

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if items.dim() == 1:
            return self._score_shared(state, items)
        return self._score_per_row(state, items)

    def _score_shared(self, seq: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, n) scores of items (n,) for every row: history (B, I) @ neighbour weights (I, n), both sparse."""
        batch, n_items, k = len(seq), self.shape.n_items, self.neighbors.shape[1]
        row, slot = torch.nonzero(seq > 0, as_tuple=True)  # (M,) each read item
        history = sparse_matrix(row, seq[row, slot] - 1, torch.ones(len(row), device=seq.device), (batch, n_items))
        history = torch.sparse_coo_tensor(history.indices(), torch.ones_like(history.values()), history.shape,
                                          check_invariants=False)  # a repeated item counts once
        column = torch.arange(len(items), device=seq.device).repeat_interleave(k)  # (n * k,)
        weights = sparse_matrix(self.neighbors[items].reshape(-1), column, self.similarities[items].reshape(-1),
                                (n_items, len(items)))  # (I, n)
        return sparse_product(history, weights).to_dense()  # (B, n)

    def _score_per_row(self, seq: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, n) scores of each row's own items (B, n): look the neighbours up in the row's sorted history."""
        batch, n = items.shape
        history = torch.sort(seq, dim=1).values  # (B, L) sorted for searchsorted; 0 = empty
        neighbors = self.neighbors[items].reshape(batch, -1) + 1  # (B, n * k) as ids + 1
        position = torch.searchsorted(history, neighbors).clamp(max=seq.shape[1] - 1)  # (B, n * k)
        found = history.gather(1, position) == neighbors  # (B, n * k) neighbour is in the row's history
        weights = self.similarities[items].reshape(batch, -1) * found  # (B, n * k)
        return weights.view(batch, n, -1).sum(-1)  # (B, n)
