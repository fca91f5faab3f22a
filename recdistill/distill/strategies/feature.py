"""`Feature`: regress the teacher's hidden representation from the student's, via a projection."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.strategy import Strategy
from recdistill.models.base import RatingOutput


@dataclass
class FeatureParams:
    """Hyperparameters of `Feature`."""

    normalize: bool = True  # layer-normalise (no affine) both sides before the squared error


class Feature(Strategy):
    """MSE between Linear(student_hidden) and teacher_hidden, mean over all B*D_teacher elements.

    The projection (student_hidden_dim -> teacher hidden dim, with bias) is created in `setup`
    and trained with the student, so the optimiser must be built after `setup`.
    """

    name = "feature"
    needs = frozenset({"hidden"})
    Params = FeatureParams

    def __init__(self, params: FeatureParams | None = None) -> None:
        super().__init__(params)
        self.projection: nn.Linear | None = None

    def setup(self, knowledge: TeacherKnowledge, student_hidden_dim: int) -> None:
        """Keep the teacher's hidden states and create the projection to their width."""
        super().setup(knowledge, student_hidden_dim)
        teacher_hidden = self.teacher["hidden"]  # (N_train, D_teacher)
        assert teacher_hidden.dim() == 2, f"teacher hidden must be 2-D, got {tuple(teacher_hidden.shape)}"
        self.projection = nn.Linear(student_hidden_dim, teacher_hidden.shape[1])

    def loss(self, student_output: RatingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """mean_{b,d} (norm(W h_student + b)[b,d] - norm(h_teacher)[b,d])^2."""
        assert self.projection is not None, "feature: call setup() before loss()"
        student_hidden = student_output.hidden  # (B, D_student)
        teacher_hidden = self.teacher_rows("hidden", batch, student_hidden.device)  # (B, D_teacher)
        projected = self.projection(student_hidden)  # (B, D_teacher)
        teacher_hidden = teacher_hidden.to(projected.dtype)
        if self.params.normalize:
            width = projected.shape[-1:]
            projected = F.layer_norm(projected, width)  # (B, D_teacher)
            teacher_hidden = F.layer_norm(teacher_hidden, width)  # (B, D_teacher)
        return F.mse_loss(projected, teacher_hidden)
