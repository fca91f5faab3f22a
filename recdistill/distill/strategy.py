"""`Strategy`: the contract every rating distillation strategy follows.

A strategy reads saved `TeacherKnowledge` (never the teacher itself), may own learnable parts
(a projection) created in `setup`, gets a per-epoch hook, and returns one unweighted scalar term
per batch. Weighting and summing are the objective's job (`recdistill.distill.objective`).
"""

from __future__ import annotations

import abc

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from recdistill.distill.knowledge import KNOWLEDGE_KINDS, TeacherKnowledge
from recdistill.models.base import RatingOutput


@dataclass
class NoParams:
    """Params of a strategy without hyperparameters."""


class Strategy(nn.Module, abc.ABC):
    """Base class for a distillation strategy on the rating task.

    Subclasses set `name`, `needs` and `Params` (a dataclass whose fields all have defaults) and
    implement `loss`. Teacher tensors are kept as plain attributes, not buffers, so they stay on
    the CPU and out of checkpoints; `teacher_rows` moves only the batch's rows to the device.
    """

    name: ClassVar[str] = ""
    task: ClassVar[str] = "rating"  # the task whose model outputs `loss` reads: rating | ranking
    needs: ClassVar[frozenset[str]] = frozenset()
    Params: ClassVar[type] = NoParams

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.needs) - set(KNOWLEDGE_KINDS)
        assert not unknown, (
            f"{cls.__name__}.needs has unknown kinds {sorted(unknown)}; valid: {list(KNOWLEDGE_KINDS)}"
        )

    def __init__(self, params: Any | None = None) -> None:
        super().__init__()
        self.params = params if params is not None else self.Params()
        assert isinstance(self.params, self.Params), (
            f"{type(self).__name__} expects {self.Params.__name__}, got {type(self.params).__name__}"
        )
        self.teacher: dict[str, torch.Tensor] = {}

    def setup(self, knowledge: TeacherKnowledge, student_hidden_dim: int) -> None:
        """Keep the teacher tensors this strategy needs; subclasses also build learnable parts here."""
        self.teacher = {kind: knowledge[kind] for kind in sorted(self.needs)}

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called before each training epoch (annealing, resampling); no-op by default."""

    @abc.abstractmethod
    def loss(self, student_output: RatingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The unweighted scalar distillation term for this batch."""

    def teacher_rows(self, kind: str, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        """The teacher's `kind` rows for the batch's training rows (`batch["index"]`), on `device`."""
        assert kind in self.teacher, (
            f"strategy {self.name!r} has no teacher {kind!r}: call setup() first "
            f"(it needs {sorted(self.needs)})"
        )
        table = self.teacher[kind]  # (N_train, ...)
        index = batch["index"].to(table.device)  # (B,)
        return table[index].to(device)  # (B, ...)

    def logit_pair(self, student_output: RatingOutput,
                   batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(student logits, teacher logits as float32 on the student's device), both (B, C)."""
        student_logits = student_output.logits  # (B, C)
        teacher_logits = self.teacher_rows("logits", batch, student_logits.device).float()  # (B, C)
        assert teacher_logits.shape == student_logits.shape, (
            f"teacher logits {tuple(teacher_logits.shape)} vs student {tuple(student_logits.shape)}"
        )
        return student_logits, teacher_logits

    def extra_repr(self) -> str:
        return f"name={self.name!r}, params={self.params}"
