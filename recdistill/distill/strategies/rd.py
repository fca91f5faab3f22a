"""`RD`: Ranking Distillation (Tang & Wang, KDD 2018).

The teacher's top-K items of each user are extra positives for the student, weighted by position:
loss_u = -sum_r w_r log sigmoid(s_u(pi_r)), r = 1..K. The position (static) weight is
w_r^a ∝ exp(-r / lambda); after `dynamic_start` epochs the ranking-discrepancy (dynamic) weight
w_r^b = tanh(max(mu * (rank_student(pi_r) - r), 0)) multiplies it (the paper's hybrid weighting),
so items the student already ranks as high as the teacher stop counting. The student's rank is
estimated from `n_samples` items drawn uniformly: floor(n_items * (#drawn scoring higher) / n_samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recdistill.distill.ranking_strategy import RankingStrategy
from recdistill.models.ranking_base import RankingOutput
from recdistill.utils.config_checks import bounded


@dataclass
class RDParams:
    """Hyperparameters of `RD` (defaults: the authors' released code)."""

    topk: int = bounded(10, ge=1)  # K, length of the teacher's list used as positives
    lambda_: float = bounded(1.0, gt=0)  # position weight sharpness: w_r ∝ exp(-r / lambda)
    mu: float = bounded(0.1, ge=0)  # ranking-discrepancy weight sharpness: tanh(mu * (student rank - r))
    dynamic: bool = True  # use the hybrid (position x discrepancy) weight after `dynamic_start` epochs
    dynamic_start: int = bounded(10, ge=0)  # epochs with the position weight only, before the hybrid weight
    n_samples: int = bounded(100, ge=1)  # items drawn per user and batch to estimate the student's ranks
    renormalize: bool = False  # rescale the hybrid weights to sum to 1 per user (the code's default: no)


class RD(RankingStrategy):
    """Weighted point-wise log loss on the teacher's top-K (see module docstring).

    Sum over the K positions, mean over the batch's final rows (the code: per training instance,
    mean over the batch). The weights are constants (no gradient). The uniform draws for the rank
    estimate may hit the user's training items; the authors draw among items the user has not
    interacted with (the knowledge does not hold training items).
    """

    name = "rd"
    needs = frozenset({"topk_items"})
    Params = RDParams

    def __init__(self, params: RDParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        assert p.topk > 0 and p.lambda_ > 0 and p.n_samples > 0, f"rd: topk, lambda_, n_samples must be > 0: {p}"

    def ranks_needed(self) -> dict[str, int]:
        """The kept top-N lists must hold at least `topk` items."""
        return {"topk": self.params.topk}

    def position_weights(self, device: torch.device) -> torch.Tensor:
        """(K,) w_r^a = exp(-r / lambda) / sum, r = 1..K."""
        ranks = torch.arange(1, self.params.topk + 1, dtype=torch.float32, device=device)  # (K,)
        weights = torch.exp(-ranks / self.params.lambda_)  # (K,)
        return weights / weights.sum()

    @torch.no_grad()
    def discrepancy_weights(self, output: RankingOutput, state: torch.Tensor, scores: torch.Tensor
                            ) -> torch.Tensor:
        """(R, K) w_r^b = max(tanh(mu * (estimated student rank - r)), 0), ranks from 0."""
        n_rows, topk = scores.shape
        draws = torch.randint(self.n_items, (n_rows, self.params.n_samples), generator=self.generator)  # (R, S)
        drawn = output.model.score_items(state, draws.to(state.device))  # (R, S)
        higher = (drawn[:, None, :] > scores[:, :, None]).sum(-1).float()  # (R, K)
        estimated = torch.floor(self.n_items * higher / self.params.n_samples)  # (R, K)
        position = torch.arange(topk, dtype=scores.dtype, device=scores.device)  # (K,)
        return torch.tanh(self.params.mu * (estimated - position)).clamp(min=0)  # (R, K)

    def loss(self, student_output: RankingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """mean over final rows of -sum_r w_{u,r} log sigmoid(s_u(pi_r))."""
        users, state = self.final_rows(student_output, batch)  # (R,), (R, D)
        if len(users) == 0:
            return self.zero(student_output)
        items = self.teacher_topk(users, state.device, self.params.topk)  # (R, K)
        valid = items >= 0  # (R, K)
        scores = self.student_scores(student_output, state, items.clamp(min=0))  # (R, K)
        weights = self.position_weights(state.device).expand_as(scores)  # (R, K)
        if self.params.dynamic and self.epoch > self.params.dynamic_start:
            weights = weights * self.discrepancy_weights(student_output, state, scores.detach())  # (R, K)
            if self.params.renormalize:
                weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)  # (R, K)
        weights = weights * valid  # (R, K)
        return -(weights * F.logsigmoid(scores)).sum(1).mean()
