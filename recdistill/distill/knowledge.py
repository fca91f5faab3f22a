"""`TeacherKnowledge`: the saved, typed artifact that distillation reads instead of the teacher."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from recdistill.utils.atomic import torch_save
from recdistill.utils.safe_load import load_plain

#: Kinds of knowledge a strategy may declare in `needs`.
KNOWLEDGE_KINDS = ("logits", "hidden", "topk_items", "topk_scores", "user_repr", "item_repr")


@dataclass
class TeacherKnowledge:
    """Per-training-example teacher outputs, aligned with the rows of the training split.

    logits: (N_train, C) the teacher's class scores for each training interaction.
    hidden: (N_train, D_teacher) the teacher's representation of each training interaction.

    Ranking task (per user and item, not per training row; `meta` holds n_users, n_items, topk):
    topk_items: (U, K) int64, each user's top-K items by the teacher, best first, the user's
        training items excluded (users without training items have rows of -1).
    topk_scores: (U, K) the teacher's scores of those items.
    user_repr: (U, D_teacher) the teacher's state of each user after reading all of their
        training items; item_repr: (I, D_teacher) its item vectors. Extracted only from teachers
        whose score is exactly user_repr[u] . item_repr[i] (`dot_product_scores`).
    """

    teacher_key: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __getitem__(self, kind: str) -> torch.Tensor:
        if kind not in self.tensors:
            raise KeyError(
                f"teacher knowledge has no {kind!r}; it holds {sorted(self.tensors)}. "
                "The strategy must declare it in `needs` so extraction produces it."
            )
        return self.tensors[kind]

    def save(self, path: str | Path) -> None:
        """Atomically save to one file."""
        torch_save(path, {"teacher_key": self.teacher_key, "tensors": self.tensors, "meta": self.meta})

    @classmethod
    def load(cls, path: str | Path) -> "TeacherKnowledge":
        """Load a file written by `save`."""
        blob = load_plain(path, "teacher knowledge")
        return cls(teacher_key=blob["teacher_key"], tensors=blob["tensors"], meta=blob["meta"])
