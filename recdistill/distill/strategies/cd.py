"""`CD`: Collaborative Distillation (Lee, Choi, Lee & Shim, ICDM 2019, "Collaborative Distillation
for Top-N Recommendation").

Unobserved items are ambiguous, so instead of treating them as negatives the student learns soft
labels from the teacher on a few of them per user: each epoch, `n_samples` items are drawn from
the teacher's ranking without replacement with rank-discounted probability
P(rank r) ∝ exp(-r / rank_temperature) (probabilistic rank-aware sampling, teacher-guided), and
loss_u = sum_i BCE(sigmoid(s_u(i)), sigmoid(t_u(i) / temperature)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recdistill.distill.ranking_strategy import RankingStrategy, rank_discount_sample
from recdistill.models.ranking_base import RankingOutput
from recdistill.utils.config_checks import bounded


@dataclass
class CDParams:
    """Hyperparameters of `CD`."""

    n_samples: int = bounded(10, ge=1)  # items drawn per user and epoch from the teacher's ranking
    rank_temperature: float = bounded(10.0, gt=0)  # P(rank r) ∝ exp(-r / rank_temperature); larger = flatter
    temperature: float = bounded(1.0, gt=0)  # soft label sigmoid(teacher score / temperature)


class CD(RankingStrategy):
    """Soft-label BCE on rank-discounted samples of the teacher's ranking (see module docstring).

    Sum over a row's samples, mean over the batch's final rows. Simplifications: samples come
    from the top-N list kept in the knowledge (`distill.teacher_topk`), not the whole ranking (the
    mass beyond rank N is at most exp(-N / rank_temperature)); only the teacher-guided variant is
    implemented (the paper's student-guided training is not).
    """

    name = "cd"
    needs = frozenset({"topk_items", "topk_scores"})
    Params = CDParams

    def __init__(self, params: CDParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        assert p.n_samples > 0 and p.rank_temperature > 0 and p.temperature > 0, (
            f"cd: n_samples, rank_temperature and temperature must be > 0, got {p}"
        )
        self.samples = torch.empty(0, 0, dtype=torch.long)  # (U, n) ranks into topk_items, this epoch

    def ranks_needed(self) -> dict[str, int]:
        """The kept top-N lists must hold at least `n_samples` items."""
        return {"n_samples": self.params.n_samples}

    def resample(self, generator: torch.Generator) -> None:
        """Draw each user's ranks for this epoch (rank-discounted, without replacement)."""
        valid = self.teacher["topk_items"] >= 0  # (U, N)
        self.samples = rank_discount_sample(valid, self.params.n_samples, self.params.rank_temperature,
                                            generator)  # (U, n)

    def loss(self, student_output: RankingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """mean over final rows of sum_i BCE(sigmoid(s_u(i)), sigmoid(t_u(i) / T)), i the user's samples."""
        users, state = self.final_rows(student_output, batch)  # (R,), (R, D)
        if len(users) == 0:
            return self.zero(student_output)
        ranks = self.samples[users.cpu()].to(state.device)  # (R, n)
        items = self.teacher_topk(users, state.device).gather(1, ranks)  # (R, n)
        valid = items >= 0  # (R, n)
        teacher = self.teacher_for("topk_scores", users, state.device).gather(1, ranks)  # (R, n)
        teacher = torch.where(valid, teacher, torch.zeros_like(teacher))  # (R, n) no -inf of empty rows
        labels = torch.sigmoid(teacher.float() / self.params.temperature)  # (R, n)
        scores = self.student_scores(student_output, state, items.clamp(min=0))  # (R, n)
        bce = F.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype), reduction="none")  # (R, n)
        return (bce * valid).sum(1).mean()
