"""A MeLU-style rating model (Lee et al., KDD 2019) meta-learned with MAML (Finn et al., 2017).

Every target is a task, its user's new-user problem in miniature: the *support set* is the visible
slots before the target in its row (the latest `history_length` of them), items the same user has
rated. The model has two parts. The *global* part, embeddings of the item id, the item's release
decade and of the user's age group, gender and occupation, is learned by the outer loop only. The
*local* part, a small decision MLP with its output layer, starts every task from the meta-learned
weights and takes `inner_steps` SGD steps on the support loss; the adapted weights then predict
the target. `adapt="all_dense"` also adapts the genre bag (the other dense layer, as in MeLU's code).

All targets of a batch adapt at once: `vmap` over targets of `grad` of a masked support loss run
through `functional_call`. An empty support (a user's first rating) has zero loss and gradient,
so its target is predicted by the meta-learned weights. With `first_order` the inner gradients are
detached (first-order MAML); otherwise the outer loss differentiates through the inner loop.

The user id is never read: a user is known only by side information and the ratings in the row.
Side tables are optional: `set_user_features` / `set_item_features` fill index buffers that the
checkpoint keeps; without them every user or item reads the all-zero "missing" rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from recdistill.errors import ConfigError
from recdistill.models.base import DataShape, RatingModel, RatingOutput
from recdistill.utils.config_checks import bounded

AGE_EDGES = (18, 25, 35, 45, 50, 56)  # MovieLens-1M age groups: under 18, 18-24, ..., 56 and over
YEAR_EDGES = tuple(range(1930, 2030, 10))  # release decades, open-ended at both ends
ADAPT_CHOICES = ("decision", "all_dense")
INNER_LOSSES = ("ce", "mse")
USER_COLUMNS = ("age", "gender", "occupation")  # columns of the user_side buffer, in this order


@dataclass
class MetaRatingConfig:
    """Sizes of the global embeddings and the local MLP, and the inner loop of MAML."""

    name: str = "meta_rating"
    dim: int = bounded(32, ge=1)  # width of every embedding (item id, decade, genre bag, age, gender, occupation)
    local_hidden: List[int] = bounded(factory=lambda: [64, 32], ge=1, min_len=1)  # decision layers, adapted per task
    # decision (MLP + output layer) | all_dense (also the genre bag)
    adapt: str = bounded("decision", choices=ADAPT_CHOICES)
    inner_steps: int = bounded(1, ge=0)  # SGD steps on each target's support set; 0 = no adaptation
    # step size of the inner SGD (second-order MAML gives up adapting when too large)
    inner_lr: float = bounded(0.5, gt=0)
    # ce (cross-entropy over classes) | mse (on the expected rating)
    inner_loss: str = bounded("ce", choices=INNER_LOSSES)
    first_order: bool = False  # True: first-order MAML (inner gradients detached); False: second-order
    mse_weight: float = bounded(0.0, ge=0)  # weight of an outer MSE term on the expected rating; 0 = CE only
    max_categories: int = bounded(32, ge=1)  # most distinct values of gender and of occupation in a users table
    max_genres: int = bounded(32, ge=1)  # most distinct genres in an items table


class Tasks(NamedTuple):
    """Inputs of every target's task: its padded support set and its query."""

    support_embedded: torch.Tensor  # (M, K, E) embedded item and user of each support slot
    support_genres: torch.Tensor  # (M, K, G) mean genre multi-hot of each support item
    support_labels: torch.Tensor  # (M, K) rating class, 0 where padded
    support_mask: torch.Tensor  # (M, K) True for a real support slot
    query_embedded: torch.Tensor  # (M, E)
    query_genres: torch.Tensor  # (M, G)


class DecisionNetwork(nn.Module):
    """The dense part: genre bag, decision layers and output layer, run functionally per task."""

    def __init__(self, n_embedded: int, n_genres: int, dim: int, hidden: list[int], n_classes: int) -> None:
        super().__init__()
        self.genre = nn.Linear(n_genres, dim, bias=False)  # embedding bag over the genre multi-hot
        widths = [n_embedded + dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(hidden[-1], n_classes)

    def forward(self, embedded: torch.Tensor, genres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """embedded (..., E), genres (..., G) -> logits (..., C), last hidden layer (..., H)."""
        x = torch.cat([embedded, self.genre(genres)], dim=-1)  # (..., E + D)
        for layer in self.layers:
            x = F.relu(layer(x))
        return self.out(x), x


def _category_codes(values: pd.Series, column: str, capacity: int) -> np.ndarray:
    """Codes 1..n of a string column's sorted distinct values; 0 where missing or empty."""
    text = values.astype("string").str.strip()
    present = (text.notna() & (text != "")).to_numpy()
    names = np.array(sorted(text[present].unique()), dtype=object)
    if len(names) > capacity:
        raise ConfigError(f"users column {column!r} has {len(names)} distinct values, more than "
                          f"max_categories={capacity}; raise the model's max_categories")
    codes = np.zeros(len(values), dtype=np.int64)
    codes[present] = np.searchsorted(names, text[present].to_numpy(dtype=object)) + 1
    return codes


def _bucket_codes(values: pd.Series, edges: tuple[int, ...]) -> np.ndarray:
    """Bucket 1..len(edges)+1 of each number; 0 where missing."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isnan(numbers), 0, np.digitize(np.nan_to_num(numbers), edges) + 1).astype(np.int64)


class MetaRatingModel(RatingModel):
    """MeLU learner adapted per target by MAML over its support set (see module docstring)."""

    Config = MetaRatingConfig
    adapts_per_user = True  # predictions adapt to each user's readable ratings (transfer=meta asks)

    def __init__(self, config: MetaRatingConfig, shape: DataShape) -> None:
        super().__init__()
        if config.adapt not in ADAPT_CHOICES:
            raise ConfigError(f"model.adapt={config.adapt!r}; valid: {', '.join(ADAPT_CHOICES)}")
        if config.inner_loss not in INNER_LOSSES:
            raise ConfigError(f"model.inner_loss={config.inner_loss!r}; valid: {', '.join(INNER_LOSSES)}")
        if not config.local_hidden or min(config.local_hidden) < 1:
            raise ConfigError(f"model.local_hidden={list(config.local_hidden)} needs one or more positive sizes")
        if config.inner_steps < 0:
            raise ConfigError(f"model.inner_steps={config.inner_steps} must be >= 0")
        self.config = config
        self.shape = shape
        self.hidden_dim = config.local_hidden[-1]
        dim = config.dim
        # global part, N(0, 1) as in MeLU; row 0 of every table is "empty or missing" and stays zero
        self.item_embedding = nn.Embedding(shape.n_items + 1, dim, padding_idx=0)  # item id + 1
        self.year_embedding = nn.Embedding(len(YEAR_EDGES) + 2, dim, padding_idx=0)
        self.age_embedding = nn.Embedding(len(AGE_EDGES) + 2, dim, padding_idx=0)
        self.gender_embedding = nn.Embedding(config.max_categories + 1, dim, padding_idx=0)
        self.occupation_embedding = nn.Embedding(config.max_categories + 1, dim, padding_idx=0)
        # side tables as index buffers (persistent: a checkpoint is self-contained); zeros = missing
        self.register_buffer("user_side", torch.zeros(shape.n_users, len(USER_COLUMNS), dtype=torch.long))
        self.register_buffer("item_year", torch.zeros(shape.n_items + 1, dtype=torch.long))
        self.register_buffer("item_genres", torch.zeros(shape.n_items + 1, config.max_genres, dtype=torch.bool))
        self.register_buffer("class_values", shape.class_values())
        # item id + decade and the three user fields are concatenated; the genre bag is added inside
        self.network = DecisionNetwork(5 * dim, config.max_genres, dim, list(config.local_hidden), shape.n_classes)

    def side_inputs(self) -> dict[str, bool]:
        """User and item tables, both optional (missing ones read the all-zero rows)."""
        return {"user_table": False, "item_table": False}

    def set_side_input(self, kind: str, value: pd.DataFrame) -> None:
        """`user_table` / `item_table`: see `set_user_features` / `set_item_features`."""
        setters = {"user_table": self.set_user_features, "item_table": self.set_item_features}
        if kind not in self.side_inputs():
            super().set_side_input(kind, value)
        setters[kind](value)

    def set_user_features(self, users: pd.DataFrame) -> None:
        """Install age group, gender and occupation from a users table (row i = user i; columns optional)."""
        assert len(users) == self.shape.n_users, f"users table has {len(users)} rows, n_users={self.shape.n_users}"
        codes = np.zeros((len(users), len(USER_COLUMNS)), dtype=np.int64)
        if "age" in users:
            codes[:, 0] = _bucket_codes(users["age"], AGE_EDGES)
        for j, column in enumerate(USER_COLUMNS[1:], start=1):
            if column in users:
                codes[:, j] = _category_codes(users[column], column, self.config.max_categories)
        self.user_side.copy_(torch.from_numpy(codes))

    def set_item_features(self, items: pd.DataFrame) -> None:
        """Install release decade and genres from an items table (row i = item i; columns optional)."""
        assert len(items) == self.shape.n_items, f"items table has {len(items)} rows, n_items={self.shape.n_items}"
        year = np.zeros(len(items) + 1, dtype=np.int64)
        genres = np.zeros((len(items) + 1, self.config.max_genres), dtype=bool)
        if "year" in items:
            year[1:] = _bucket_codes(items["year"], YEAR_EDGES)
        if "genres" in items:
            flags = items["genres"].fillna("").astype(str).str.get_dummies(sep="|")  # columns sorted by name
            flags = flags.loc[:, [name.strip() != "" for name in flags.columns]]
            if flags.shape[1] > self.config.max_genres:
                raise ConfigError(f"items table has {flags.shape[1]} distinct genres, more than "
                                  f"max_genres={self.config.max_genres}; raise the model's max_genres")
            genres[1:, : flags.shape[1]] = flags.to_numpy() > 0
        self.item_year.copy_(torch.from_numpy(year))
        self.item_genres.copy_(torch.from_numpy(genres))

    def embed_items(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Item tokens (id + 1, 0 = empty), any shape (...,) -> embedded (..., 2D), mean genres (..., G)."""
        embedded = torch.cat([self.item_embedding(tokens), self.year_embedding(self.item_year[tokens])], -1)
        genres = self.item_genres[tokens].to(embedded.dtype)  # (..., G)
        return embedded, genres / genres.sum(-1, keepdim=True).clamp(min=1.0)

    def embed_users(self, users: torch.Tensor) -> torch.Tensor:
        """User ids (M,) -> side-information embedding (M, 3D); the id itself is never read."""
        side = self.user_side[users]  # (M, 3)
        return torch.cat([self.age_embedding(side[:, 0]), self.gender_embedding(side[:, 1]),
                          self.occupation_embedding(side[:, 2])], -1)

    def tasks(self, batch: dict[str, torch.Tensor]) -> Tasks:
        """Every target's support set (the latest visible slots before it in its row) and query."""
        items, ratings, visible = batch["seq_items"], batch["seq_ratings"], batch["seq_visible"]
        rows, slots = batch["seq_target"].nonzero(as_tuple=True)  # (M,) each, row-major like the targets
        assert len(rows) == len(batch["user"]), f"{len(rows)} target slots but {len(batch['user'])} targets"
        positions = torch.arange(items.shape[1], device=items.device)
        readable = visible[rows] & (positions < slots.unsqueeze(1))  # (M, S) never the target itself
        width = min(self.shape.history_length, items.shape[1])
        latest, support_slots = torch.where(readable, positions, -1).topk(width, dim=1)  # (M, K)
        mask = latest >= 0  # (M, K)
        support_items = torch.where(mask, items[rows.unsqueeze(1), support_slots], 0)  # (M, K)
        classes = torch.where(mask, ratings[rows.unsqueeze(1), support_slots], 0)  # (M, K) class + 1
        assert bool((classes[mask] > 0).all()), "a visible slot before a target has no rating"
        user = self.embed_users(batch["user"])  # (M, 3D)
        support_embedded, support_genres = self.embed_items(support_items)  # (M, K, 2D), (M, K, G)
        support_embedded = torch.cat([support_embedded, user.unsqueeze(1).expand(-1, width, -1)], -1)  # (M, K, E)
        query_embedded, query_genres = self.embed_items(items[rows, slots])  # (M, 2D), (M, G)
        return Tasks(support_embedded, support_genres, (classes - 1).clamp(min=0), mask,
                     torch.cat([query_embedded, user], -1), query_genres)

    def split_parameters(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The network's parameters as (local: adapted per task, fixed: meta-learned only)."""
        params = dict(self.network.named_parameters())
        adapt_all = self.config.adapt == "all_dense"
        local = {name: p for name, p in params.items() if adapt_all or not name.startswith("genre.")}
        return local, {name: p for name, p in params.items() if name not in local}

    def _support_loss(self, local: dict[str, torch.Tensor], fixed: dict[str, torch.Tensor], embedded: torch.Tensor,
                      genres: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked mean loss of one task's support set (K slots); 0 when the support is empty."""
        logits, _ = functional_call(self.network, {**fixed, **local}, (embedded, genres))  # (K, C)
        if self.config.inner_loss == "ce":
            per_slot = F.cross_entropy(logits, labels, reduction="none")  # (K,)
        else:
            per_slot = (logits.softmax(-1) @ self.class_values - (labels + 1).to(logits.dtype)) ** 2  # (K,)
        return (per_slot * mask).sum() / mask.sum().clamp(min=1)

    def _adapt(self, local: dict[str, torch.Tensor], fixed: dict[str, torch.Tensor], embedded: torch.Tensor,
               genres: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """One task's local weights after the inner SGD steps on its support set."""
        for _ in range(self.config.inner_steps):
            grads = grad(self._support_loss)(local, fixed, embedded, genres, labels, mask)
            if self.config.first_order:
                grads = {name: g.detach() for name, g in grads.items()}
            local = {name: p - self.config.inner_lr * grads[name] for name, p in local.items()}
        return local

    def _adapt_and_predict(self, local: dict[str, torch.Tensor], fixed: dict[str, torch.Tensor],
                           *task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One task: adapt on the support set, then (logits (C,), hidden (H,)) of the query."""
        *support, query_embedded, query_genres = task
        adapted = self._adapt(local, fixed, *support)
        return functional_call(self.network, {**fixed, **adapted}, (query_embedded, query_genres))

    def adapted_parameters(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The network's parameters after each target's inner loop: local ones (M, ...), fixed ones as they are."""
        with torch.inference_mode(False):
            local, fixed = self.split_parameters()
            task = self.tasks(batch)
            adapted = vmap(self._adapt, in_dims=(None, None, 0, 0, 0, 0))(local, fixed, *task[:4])
        return {**fixed, **adapted}

    def forward(self, batch: dict[str, torch.Tensor]) -> RatingOutput:
        # the inner loop needs gradients even while evaluating; grad() ignores an outer no_grad,
        # inference mode has to be lifted
        with torch.inference_mode(False):
            local, fixed = self.split_parameters()
            task = self.tasks(batch)
            logits, hidden = vmap(self._adapt_and_predict, in_dims=(None, None, 0, 0, 0, 0, 0, 0))(
                local, fixed, *task)  # (M, C), (M, H)
        expected = logits.softmax(dim=-1) @ self.class_values  # (M,)
        return RatingOutput(logits=logits, rating=expected, hidden=hidden)

    def loss(self, batch: dict[str, torch.Tensor], output: RatingOutput) -> dict[str, torch.Tensor]:
        terms = {"ce": F.cross_entropy(output.logits, batch["label"])}
        if self.config.mse_weight > 0:
            terms["mse"] = self.config.mse_weight * F.mse_loss(output.rating, batch["rating"])
        return terms
