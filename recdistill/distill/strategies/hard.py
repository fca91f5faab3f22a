"""`Hard`: train the student on the teacher's predicted class as if it were the label."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recdistill.distill.strategy import NoParams, Strategy
from recdistill.models.base import RatingOutput


class Hard(Strategy):
    """Cross-entropy of the student's logits against the teacher's argmax class (batch mean)."""

    name = "hard"
    needs = frozenset({"logits"})
    Params = NoParams

    def loss(self, student_output: RatingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """mean_b CE(student_logits_b, argmax_c teacher_logits_b)."""
        student_logits, teacher_logits = self.logit_pair(student_output, batch)  # (B, C) each
        return F.cross_entropy(student_logits, teacher_logits.argmax(dim=-1))
