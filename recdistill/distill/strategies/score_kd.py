"""`ScoreKD`: score (logit) distillation with a temperature, Hinton et al. (2015) applied to
item scores: each user's softmax over candidate items, the teacher's as the target.

    loss_u = T^2 * KL(softmax(t_u / T) || softmax(s_u / T))   over the user's candidate items
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recdistill.distill.ranking_strategy import RankingStrategy, sample_outside
from recdistill.errors import ConfigError
from recdistill.models.ranking_base import RankingOutput
from recdistill.utils.config_checks import bounded

#: Candidate sets: every item, or the teacher's top-K plus uniform samples from the rest.
CANDIDATES = ("all", "topk_sampled")


@dataclass
class ScoreKDParams:
    """Hyperparameters of `ScoreKD`."""

    temperature: float = bounded(1.0, gt=0)  # softens both distributions; the term is rescaled by T^2
    # "all" items, or "topk_sampled": the teacher's top-K + uniform samples
    candidates: str = bounded("all", choices=CANDIDATES)
    topk: int = bounded(100, ge=1)  # topk_sampled: items from the teacher's top list
    n_samples: int = bounded(100, ge=0)  # topk_sampled: items drawn per user and batch from outside the top-K


class ScoreKD(RankingStrategy):
    """T^2 * KL(teacher || student) over candidate items, mean over the batch's final rows.

    candidates="all" scores `arange(n_items)` for every final user: a (users x items) matrix per
    batch for each model, fine for catalogues up to about 100k items. "topk_sampled" uses the
    teacher's top-`topk` plus `n_samples` items drawn (with replacement, from the strategy's epoch
    generator) among the rest, a sampled approximation for larger catalogues. The teacher's scores
    are user_repr . item_repr; `topk_items` is only read by "topk_sampled".
    """

    name = "score_kd"
    needs = frozenset({"user_repr", "item_repr", "topk_items"})
    Params = ScoreKDParams

    def __init__(self, params: ScoreKDParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        if p.candidates not in CANDIDATES:
            raise ConfigError(f"distill.terms.score_kd.candidates must be one of {list(CANDIDATES)}, "
                              f"got {p.candidates!r}")
        assert p.temperature > 0 and p.topk > 0 and p.n_samples >= 0, f"score_kd: invalid params {p}"

    def ranks_needed(self) -> dict[str, int]:
        """topk_sampled: the kept top-N lists must hold at least `topk` items."""
        return {"topk": self.params.topk} if self.params.candidates == "topk_sampled" else {}

    def candidate_items(self, users: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(R, K + n) per-user candidates for "topk_sampled" (invalid top-K slots are -1)."""
        top = self.teacher["topk_items"][users.cpu(), : self.params.topk]  # (R, K)
        if self.params.n_samples == 0:
            return top.to(device)
        drawn = sample_outside(top, self.params.n_samples, self.n_items, self.generator)  # (R, n)
        return torch.cat([top, drawn], 1).to(device)  # (R, K + n)

    def loss(self, student_output: RankingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean over final rows of T^2 * sum_i p_t(i) (log p_t(i) - log p_s(i)) over the candidates."""
        users, state = self.final_rows(student_output, batch)  # (R,), (R, D)
        if len(users) == 0:
            return self.zero(student_output)
        device = state.device
        if self.params.candidates == "all":
            items = torch.arange(self.n_items, device=device)  # (I,)
            student = self.student_scores(student_output, state, items)  # (R, I)
            teacher = self.teacher_for("user_repr", users, device) @ self.teacher_item_table(device).T  # (R, I)
            valid = torch.ones_like(student, dtype=torch.bool)  # (R, I)
        else:
            items = self.candidate_items(users, device)  # (R, C)
            valid = items >= 0  # (R, C)
            student = self.student_scores(student_output, state, items.clamp(min=0))  # (R, C)
            teacher = self.teacher_scores(users, items.clamp(min=0), device)  # (R, C)
        temperature = self.params.temperature
        lowest = torch.finfo(student.dtype).min / 4  # masked candidates get probability 0
        student_log_probs = F.log_softmax((student / temperature).masked_fill(~valid, lowest), dim=-1)  # (R, C)
        teacher_log_probs = F.log_softmax((teacher.to(student.dtype) / temperature).masked_fill(~valid, lowest),
                                          dim=-1)  # (R, C)
        divergence = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(-1)  # (R,)
        return divergence.mean() * temperature**2
