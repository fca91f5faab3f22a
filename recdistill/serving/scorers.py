"""Scorers: full-catalogue scores for the inputs a served model reads, from PyTorch or from ONNX.

Two kinds of ranking model are served:

    sequence      reads the user's latest items (SASRec, GRU4Rec): `score_sequences(seq)`, seq
                  (B, L) int64 item id + 1, left-padded with 0, any L up to the model's max_length
    dot_product   an ID model whose score is user vector . item vector (BPR-MF, LightGCN):
                  `score_users(users)` for known users, `score_states(states)` for folded-in
                  vectors (B, D), and `item_vectors(items)` for the fold-in

Every method takes and returns numpy arrays; scores are (B, I) float32 over the whole catalogue.
`TorchScorer` runs the checkpoint's own code (forward + score_items); the graphs below are what
the export turns into ONNX, and `recdistill.serving.onnx_scorer.OnnxScorer` runs them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from recdistill.errors import ConfigError
from recdistill.models.ranking_base import RankingModel

#: The kinds of served model (see the module docstring).
KINDS = ("sequence", "dot_product")


def serving_kind(model: nn.Module) -> str:
    """"sequence" or "dot_product" for a servable ranking model; ConfigError naming the model otherwise."""
    if isinstance(model, RankingModel) and model.input_kind == "sequences":
        return "sequence"
    if isinstance(model, RankingModel) and model.input_kind == "pairs" and model.dot_product_scores:
        return "dot_product"
    name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    raise ConfigError(f"model {name!r} cannot be served: export and recommend take sequence models (sasrec, "
                      "gru4rec) and dot-product ID models (bpr_mf, lightgcn); models fitted by counting "
                      "(popularity, item_knn) and rating models have no exported form")


class Scorer(Protocol):
    """What a Recommender asks of a model (see the module docstring)."""

    kind: str

    def score_sequences(self, seq: np.ndarray) -> np.ndarray:
        """(B, I) scores of item-token rows seq (B, L)."""

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """(B, I) scores of known users (B,) (internal ids)."""

    def score_states(self, states: np.ndarray) -> np.ndarray:
        """(B, I) scores of user vectors (B, D)."""

    def item_vectors(self, items: np.ndarray) -> np.ndarray:
        """(n, D) float32 vectors of items (n,) (internal ids)."""


def wrong_kind(kind: str, method: str) -> ConfigError:
    """The error of a scorer asked for an input its model does not read."""
    reads = "item histories (seq)" if kind == "sequence" else "user ids, user vectors and item vectors"
    return ConfigError(f"{method} does not apply to a {kind} model, which reads {reads}")


class TorchScorer:
    """The checkpoint's own scoring code, on `device` (CPU by default), without gradients."""

    def __init__(self, model: RankingModel, device: torch.device | str = "cpu") -> None:
        self.kind = serving_kind(model)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.all_items = torch.arange(model.shape.n_items, device=self.device)  # (I,)

    def _scores(self, state: torch.Tensor) -> np.ndarray:
        return self.model.score_items(state, self.all_items).float().cpu().numpy()  # (B, I)

    @torch.no_grad()
    def score_sequences(self, seq: np.ndarray) -> np.ndarray:
        if self.kind != "sequence":
            raise wrong_kind(self.kind, "score_sequences")
        return self._scores(self.model({"seq": torch.as_tensor(seq, device=self.device)}).state)

    @torch.no_grad()
    def score_users(self, users: np.ndarray) -> np.ndarray:
        if self.kind != "dot_product":
            raise wrong_kind(self.kind, "score_users")
        user = torch.as_tensor(users, dtype=torch.long, device=self.device)
        batch = {"user": user, "final": torch.ones(len(user), dtype=torch.bool, device=self.device)}
        return self._scores(self.model(batch).state)

    @torch.no_grad()
    def score_states(self, states: np.ndarray) -> np.ndarray:
        if self.kind != "dot_product":
            raise wrong_kind(self.kind, "score_states")
        return self._scores(torch.as_tensor(states, dtype=torch.float32, device=self.device))

    @torch.no_grad()
    def item_vectors(self, items: np.ndarray) -> np.ndarray:
        if self.kind != "dot_product":
            raise wrong_kind(self.kind, "item_vectors")
        vectors = self.model.item_vectors(torch.as_tensor(items, dtype=torch.long, device=self.device))
        return vectors.float().cpu().numpy()  # (n, D)


class SequenceScores(nn.Module):
    """Graph of a sequence model: seq (B, L) -> scores (B, I), the model's forward and score_items
    (its explicit attention masks included)."""

    def __init__(self, model: RankingModel) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("all_items", torch.arange(model.shape.n_items), persistent=False)  # (I,)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        state = self.model({"seq": seq}).state  # (B, D)
        return self.model.score_items(state, self.all_items)  # (B, I)


class UserScores(nn.Module):
    """Graph of a dot-product ID model for known users: user (B,) -> users[user] @ items.T (B, I).
    The tables are what the model computes (BPR-MF: its factors; LightGCN: the propagated vectors)."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("users", users)  # (U, D)
        self.register_buffer("items", items)  # (I, D)

    def forward(self, user: torch.Tensor) -> torch.Tensor:
        return self.users[user] @ self.items.T  # (B, I)


class StateScores(nn.Module):
    """Graph of a dot-product ID model for given user vectors: state (B, D) -> state @ items.T (B, I)."""

    def __init__(self, items: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("items", items)  # (I, D)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return state @ self.items.T  # (B, I)


@torch.no_grad()
def vector_tables(model: RankingModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(users (U, D), items (I, D)) float32 CPU: every known user's state and every item's vector,
    computed by the model's own forward and item_vectors."""
    model.eval()
    user = torch.arange(model.shape.n_users)
    users = model({"user": user, "final": torch.ones(len(user), dtype=torch.bool)}).state.float()  # (U, D)
    items = model.item_vectors(torch.arange(model.shape.n_items)).float()  # (I, D)
    return users.contiguous(), items.contiguous()
