"""`RRD`: Relaxed Ranking Distillation (Kang, Hwang, Kweon & Yu, CIKM 2020, "DE-RRD: A Knowledge
Distillation Framework for Recommender System").

Each epoch, per user: K *interesting* items drawn from the teacher's top-N without replacement
with P(rank r) ∝ exp(-r / temperature), ordered by teacher rank, and L *uninteresting* items drawn
uniformly from the items ranked below the top-N. The relaxed Plackett-Luce loss asks the student
to reproduce the order of the interesting items, and only to place the uninteresting ones below
them (their own order does not matter):

    loss_u = -sum_k [ s_k - log( sum_{j >= k} exp(s_j) + sum_{l} exp(s_l) ) ]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recdistill.distill.ranking_strategy import RankingStrategy, rank_discount_sample, sample_outside
from recdistill.models.ranking_base import RankingOutput
from recdistill.utils.config_checks import bounded


@dataclass
class RRDParams:
    """Hyperparameters of `RRD` (defaults: the authors' released code)."""

    n_interesting: int = bounded(40, ge=1)  # K, items drawn from the teacher's top-N per user and epoch
    n_uninteresting: int = bounded(40, ge=1)  # L, items drawn uniformly from below the top-N per user and epoch
    temperature: float = bounded(10.0, gt=0)  # P(rank r) ∝ exp(-r / temperature) for the interesting items


def relaxed_ranking_loss(interesting: torch.Tensor, uninteresting: torch.Tensor,
                         valid: torch.Tensor | None = None) -> torch.Tensor:
    """(F,) -sum_k [s_k - log(sum_{j>=k} exp(s_j) + sum_l exp(u_l))] for interesting (F, K) in
    teacher order and uninteresting (F, L); `valid` (F, K) drops interesting entries."""
    if valid is None:
        valid = torch.ones_like(interesting, dtype=torch.bool)
    lowest = torch.finfo(interesting.dtype).min / 4  # exp() of it is 0 and stays finite in the backward
    masked = interesting.masked_fill(~valid, lowest)  # (F, K)
    tail = torch.logcumsumexp(masked.flip(1), dim=1).flip(1)  # (F, K) log sum_{j>=k} exp(s_j)
    below = torch.logsumexp(uninteresting, dim=1, keepdim=True)  # (F, 1)
    log_denominator = torch.logaddexp(tail, below)  # (F, K)
    return -((masked - log_denominator) * valid).sum(1)  # (F,)


class RRD(RankingStrategy):
    """Relaxed ranking distillation on per-epoch samples (see module docstring).

    Summed over the batch's final users (each once, as the code's `batch_user.unique()`) and
    divided by the number of final rows (see `recdistill.distill.ranking_strategy`). Uninteresting items
    are drawn with replacement and may include the user's training items (the knowledge does not
    hold them); the authors draw without replacement among items neither in the top-N nor in
    training. Their chance of a training item is |I_u| / |I| per draw.
    """

    name = "rrd"
    needs = frozenset({"topk_items"})
    Params = RRDParams

    def __init__(self, params: RRDParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        assert p.n_interesting > 0 and p.n_uninteresting > 0 and p.temperature > 0, (
            f"rrd: n_interesting, n_uninteresting and temperature must be > 0, got {p}"
        )
        self.interesting = torch.empty(0, 0, dtype=torch.long)  # (U, K) ranks into topk_items
        self.uninteresting = torch.empty(0, 0, dtype=torch.long)  # (U, L) item ids

    def ranks_needed(self) -> dict[str, int]:
        """The kept top-N lists must hold at least `n_interesting` items."""
        return {"n_interesting": self.params.n_interesting}

    def resample(self, generator: torch.Generator) -> None:
        """Draw each user's interesting ranks (sorted, best first) and uninteresting items."""
        topk_items = self.teacher["topk_items"]  # (U, N)
        self.interesting = rank_discount_sample(topk_items >= 0, self.params.n_interesting,
                                                self.params.temperature, generator)  # (U, K)
        self.uninteresting = sample_outside(topk_items, self.params.n_uninteresting, self.n_items,
                                            generator)  # (U, L)

    def loss(self, student_output: RankingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Relaxed Plackett-Luce loss summed over final users, divided by the number of final rows."""
        users, state = self.final_users(student_output, batch)  # (F,), (F, D)
        if len(users) == 0:
            return self.zero(student_output)
        ranks = self.interesting[users.cpu()].to(state.device)  # (F, K)
        interesting = self.teacher_topk(users, state.device).gather(1, ranks)  # (F, K)
        uninteresting = self.uninteresting[users.cpu()].to(state.device)  # (F, L)
        valid = interesting >= 0  # (F, K)
        items = torch.cat([interesting.clamp(min=0), uninteresting], 1)  # (F, K + L)
        scores = self.student_scores(student_output, state, items)  # (F, K + L)
        above, below = scores.split([interesting.shape[1], uninteresting.shape[1]], dim=1)  # (F, K), (F, L)
        return relaxed_ranking_loss(above, below, valid).sum() / self.n_final(batch)
