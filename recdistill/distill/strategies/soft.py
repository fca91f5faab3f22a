"""`Soft`: match the teacher's class probabilities with a squared error."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recdistill.distill.strategy import Strategy
from recdistill.models.base import RatingOutput
from recdistill.utils.config_checks import bounded


@dataclass
class SoftParams:
    """Hyperparameters of `Soft`."""

    temperature: float = bounded(1.0, gt=0)  # both distributions are softmax(logits / temperature)


class Soft(Strategy):
    """MSE between softmax(student/T) and softmax(teacher/T), mean over all B*C elements.

    Averaging over every element (not summing over classes) keeps the term's scale independent
    of the number of rating classes.
    """

    name = "soft"
    needs = frozenset({"logits"})
    Params = SoftParams

    def __init__(self, params: SoftParams | None = None) -> None:
        super().__init__(params)
        assert self.params.temperature > 0, f"soft: temperature must be > 0, got {self.params.temperature}"

    def loss(self, student_output: RatingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """mean_{b,c} (p_student[b,c] - p_teacher[b,c])^2."""
        temperature = self.params.temperature
        student_logits, teacher_logits = self.logit_pair(student_output, batch)  # (B, C) each
        student_probs = F.softmax(student_logits / temperature, dim=-1)  # (B, C)
        teacher_probs = F.softmax(teacher_logits / temperature, dim=-1)  # (B, C)
        return F.mse_loss(student_probs, teacher_probs.to(student_probs.dtype))
