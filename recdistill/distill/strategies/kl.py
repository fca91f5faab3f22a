"""`KL`: Hinton et al. (2015) knowledge distillation with a softening temperature."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recdistill.distill.strategy import Strategy
from recdistill.models.base import RatingOutput
from recdistill.utils.config_checks import bounded


@dataclass
class KLParams:
    """Hyperparameters of `KL`."""

    temperature: float = bounded(2.0, gt=0)  # softens both distributions; the term is rescaled by T^2


class KL(Strategy):
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), summed over classes, mean over batch.

    The T^2 factor keeps gradient magnitudes comparable across temperatures (Hinton et al.).
    """

    name = "kl"
    needs = frozenset({"logits"})
    Params = KLParams

    def __init__(self, params: KLParams | None = None) -> None:
        super().__init__(params)
        assert self.params.temperature > 0, f"kl: temperature must be > 0, got {self.params.temperature}"

    def loss(self, student_output: RatingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """T^2 / B * sum_{b,c} p_teacher[b,c] * (log p_teacher[b,c] - log p_student[b,c])."""
        temperature = self.params.temperature
        student_logits, teacher_logits = self.logit_pair(student_output, batch)  # (B, C) each
        student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)  # (B, C)
        teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)  # (B, C)
        divergence = F.kl_div(
            student_log_probs,
            teacher_log_probs.to(student_log_probs.dtype),
            reduction="batchmean",
            log_target=True,
        )
        return divergence * temperature**2
