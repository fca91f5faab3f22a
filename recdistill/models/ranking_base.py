"""The contract every top-K ranking model follows, so any model can be teacher or student.

Batches (built by `recdistill.data.ranking_data`), all tensors on the model's device:

    pairs      user (B,), pos (B,) a training item of the user, neg (B, N) items sampled
               uniformly among those the user has not interacted with in training
    sequences  user (B,), seq (B, L) input item ids + 1, left-padded with 0, in time order;
               target (B, L) the next item id + 1 for each input slot (0 = no target there);
               final (B,) True where the row ends at the user's latest input interaction
    users      user (B,), seq (B, L) the user's latest visible items + 1, left-padded;
               final (B,) all True -- the evaluation and extraction batch of every model

Every batch has `user` and `final`; a pairs batch also has `final` (all True, a user's state does
not depend on a position). `forward(batch)` returns the *state* of each row: what the model knows
about the user after reading the row's input (for sequences, the state after the last slot), and
`score_items(state, items)` turns states into scores. Evaluation ranks all items chunk by chunk
with `score_items(state, torch.arange(start, stop))`, so a model never has to materialise a
users x catalogue matrix larger than one chunk.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from recdistill.models.side_inputs import SideInputs

#: Training batch layouts a model may ask for (`RankingModel.input_kind`).
INPUT_KINDS = ("pairs", "sequences", "none")


@dataclass
class RankingShape:
    """Sizes a ranking model needs from the data at construction time."""

    n_users: int
    n_items: int
    max_length: int = 50  # input slots of sequence batches (`seq` width)


class RankingOutput(NamedTuple):
    """What a ranking model returns for a batch."""

    state: torch.Tensor  # (B, ...) per-row user state, the first argument of `score_items`
    model: "RankingModel"  # the model that produced it: strategies score items through it
    extras: dict[str, Any]  # model-specific tensors its own `loss` reads (e.g. per-slot states)

    def score(self, items: torch.Tensor) -> torch.Tensor:
        """`self.model.score_items(self.state, items)`."""
        return self.model.score_items(self.state, items)


class RankingModel(SideInputs, nn.Module, abc.ABC):
    """Base class of top-K ranking models.

    Subclasses set `Config` (a dataclass whose `name` default is the model's name), `input_kind`
    (which training batches it reads), `hidden_dim`, and implement `forward`, `loss` and
    `item_vectors`. Models whose score is exactly `state . item_vectors(item)` keep
    `dot_product_scores = True`; distillation strategies that compare embeddings rely on it.
    Models fitted by counting (`input_kind = "none"`) override `fit` and have no `loss`.
    """

    Config: ClassVar[type]
    input_kind: ClassVar[str] = "pairs"
    dot_product_scores: ClassVar[bool] = True
    hidden_dim: int

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor]) -> RankingOutput:
        """The state of each row of the batch (see the module docstring)."""

    def loss(self, batch: dict[str, torch.Tensor], output: RankingOutput) -> dict[str, torch.Tensor]:
        """The model's own loss terms on ground truth (unweighted)."""
        raise NotImplementedError(f"{type(self).__name__} is fitted by `fit`, not by gradient steps")

    @abc.abstractmethod
    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """(n, D) representations of `items` (n,), the vectors states are scored against."""

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of `items` for each row: items (n,) shared by all rows -> (B, n);
        items (B, n), one list per row -> (B, n)."""
        vectors = self.item_vectors(items.reshape(-1)).reshape(*items.shape, -1)  # (n, D) or (B, n, D)
        if items.dim() == 1:
            return state @ vectors.T  # (B, n)
        return torch.einsum("bd,bnd->bn", state, vectors)  # (B, n)

    def pair_negatives(self) -> int:
        """Negatives per positive in the `pairs` training batches this model reads."""
        return 1

    def item_embedding_table(self) -> tuple[nn.Embedding, int] | None:
        """(embedding, row of item 0) holding the model's item vectors, which zero-shot cold start
        may overwrite; None for models without one."""
        return None

    def fit(self, train: Any) -> None:
        """Fit from the training interactions without gradients (`input_kind == "none"` models)."""

    def represent(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The state that embedding-level distillation reads, (B, hidden_dim)."""
        return self.forward(batch).state
