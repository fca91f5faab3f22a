"""`DE`: Distillation Experts (Kang, Hwang, Kweon & Yu, CIKM 2020, "DE-RRD: A Knowledge
Distillation Framework for Recommender System").

Several small experts map the student's representation into the teacher's space; a selection
network reads the teacher's representation and picks one expert per entity with Gumbel-softmax,
whose temperature is annealed towards 0 over training (a hard choice in the end). The loss is the
squared error between the teacher's representation and the selected expert's reconstruction,
for the batch's users (student state vs `user_repr`) and items (`item_vectors` vs `item_repr`):

    loss = [ sum_u ||t_u - E_{z(u)}(s_u)||^2 + mean over item groups of sum_i ||t_i - E'_{z(i)}(s_i)||^2 ] / R

over the batch's unique final users and items, R the number of final rows (the authors' sums,
rescaled to a base loss averaged over rows; see `recdistill.distill.ranking_strategy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.ranking_strategy import RankingStrategy
from recdistill.models.ranking_base import RankingOutput
from recdistill.utils.config_checks import at_most, bounded, value_rules


def annealed_temperature(epoch: int, initial: float, final: float, anneal_epochs: int) -> float:
    """initial * (final / initial) ** ((epoch - 1) / anneal_epochs), never below `final`; epoch 1
    (the first training epoch) and epoch 0 (right after setup) use `initial`."""
    progress = max(epoch - 1, 0) / anneal_epochs
    return max(initial * (final / initial) ** progress, final)


def linear_init(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)): `nn.Linear`'s default for weights and biases."""
    bound = 1.0 / fan_in ** 0.5
    return torch.empty(shape).uniform_(-bound, bound)


class ExpertMixture(nn.Module):
    """`n_experts` two-layer MLPs (student dim -> teacher dim) and a linear-softmax selector over
    the teacher's representation, mixed by a Gumbel-softmax sample of the selector.

    The experts' weights are stacked tensors, so all experts run as one batched product; as the
    second layer is linear, the mixture is taken over the hidden units before it (one matmul over
    experts x hidden instead of one per expert), which gives the same result as mixing the outputs.
    Once the annealed temperature makes the mixture weights exactly 0 for most (row, expert) pairs,
    each expert runs only on the rows that give it a weight: the same sum without its zero terms,
    and the same gradients (the softmax passes none to a weight that is exactly 0 or 1).
    """

    def __init__(self, student_dim: int, teacher_dim: int, n_experts: int) -> None:
        super().__init__()
        # Hidden width halfway between the two sizes; half the student's when they are equal.
        hidden = student_dim // 2 if student_dim == teacher_dim else (student_dim + teacher_dim) // 2
        hidden = max(hidden, 1)
        self.hidden_weight = nn.Parameter(linear_init((n_experts, student_dim, hidden), student_dim))
        self.hidden_bias = nn.Parameter(linear_init((n_experts, hidden), student_dim))
        self.out_weight = nn.Parameter(linear_init((n_experts, hidden, teacher_dim), hidden))
        self.out_bias = nn.Parameter(linear_init((n_experts, teacher_dim), hidden))
        self.selector = nn.Linear(teacher_dim, n_experts)

    @property
    def n_experts(self) -> int:
        return self.hidden_weight.shape[0]

    def hidden(self, student: torch.Tensor) -> torch.Tensor:
        """(E, n, H) every expert's hidden units for `student` (n, Ds)."""
        return F.relu(torch.matmul(student.unsqueeze(0), self.hidden_weight) + self.hidden_bias[:, None, :])

    def each_expert(self, student: torch.Tensor) -> torch.Tensor:
        """(E, n, Dt) every expert's reconstruction from `student` (n, Ds)."""
        return torch.matmul(self.hidden(student), self.out_weight) + self.out_bias[:, None, :]

    def select(self, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """(n, E) Gumbel-softmax of log softmax(selector(teacher)) at `temperature`."""
        probs = F.softmax(self.selector(teacher), dim=-1)  # (n, E)
        uniform = torch.rand_like(probs).clamp(1e-20, 1 - 1e-7)  # (n, E) global RNG: the loop seeds it
        gumbel = -torch.log(-torch.log(uniform))  # (n, E)
        return F.softmax((torch.log(probs + 1e-10) + gumbel) / temperature, dim=-1)  # (n, E)

    @torch.no_grad()
    def assign(self, teacher: torch.Tensor) -> torch.Tensor:
        """(n,) the selector's most likely expert for each teacher representation."""
        return self.selector(teacher).argmax(-1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """(n, Dt) the selected experts' reconstructions of `teacher` (n, Dt) from `student` (n, Ds)."""
        if self.n_experts == 1:
            return self.each_expert(student)[0]  # (n, Dt)
        weights = self.select(teacher, temperature)  # (n, E)
        rows, experts = torch.nonzero(weights, as_tuple=True)  # the (row, expert) pairs that contribute
        if 2 * len(rows) <= weights.numel():
            return self._sparse_mixture(student, weights, rows, experts)
        hidden = self.hidden(student) * weights.T[:, :, None]  # (E, n, H) weighted per row
        n_experts, rows, width = hidden.shape
        mixed_hidden = hidden.transpose(0, 1).reshape(rows, n_experts * width)  # (n, E*H)
        return mixed_hidden @ self.out_weight.reshape(n_experts * width, -1) + weights @ self.out_bias  # (n, Dt)

    def _sparse_mixture(self, student: torch.Tensor, weights: torch.Tensor, rows: torch.Tensor,
                        experts: torch.Tensor) -> torch.Tensor:
        """(n, Dt) the mixture summed over the nonzero `weights` (n, E) only: each expert (a loop over
        at most E experts, not rows) reconstructs the rows that weight it."""
        mixed = student.new_zeros(len(student), self.out_weight.shape[-1])  # (n, Dt)
        # unbind: one backward node per stacked parameter, not one zero-filled gradient per expert
        hidden_weight, hidden_bias = self.hidden_weight.unbind(0), self.hidden_bias.unbind(0)
        out_weight, out_bias = self.out_weight.unbind(0), self.out_bias.unbind(0)
        for expert in torch.unique(experts).tolist():
            mine = rows[experts == expert]  # (r,)
            hidden = F.relu(student[mine] @ hidden_weight[expert] + hidden_bias[expert])  # (r, H)
            output = hidden @ out_weight[expert] + out_bias[expert]  # (r, Dt)
            mixed = mixed.index_add(0, mine, weights[mine, expert, None] * output)
        return mixed

    def squared_error(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """sum_n ||teacher_n - mixture(student_n)||^2 (0 for no rows)."""
        if len(student) == 0:
            return student.sum() * 0
        teacher = teacher.to(student.dtype)
        return (teacher - self(student, teacher, temperature)).pow(2).sum()


@value_rules(at_most("final_temperature", "initial_temperature"))  # the temperature cools down
@dataclass
class DEParams:
    """Hyperparameters of `DE` (defaults: the authors' released code)."""

    n_experts: int = bounded(30, ge=1)  # experts per side (users, items)
    initial_temperature: float = bounded(1.0, gt=0)  # Gumbel-softmax temperature in the first epoch
    final_temperature: float = bounded(1e-10, gt=0)  # annealed geometrically down to this (a hard choice)
    anneal_epochs: int = bounded(1000, ge=1)  # epochs over which the temperature goes from initial to final
    topk: int = bounded(10, ge=1)  # items from the teacher's top-K per user when the batch has no `pos`/`neg`


class DE(RankingStrategy):
    """Distillation experts for users and items (see module docstring).

    Items: those of the batch's final rows, `pos` and `neg` (each group's sum weighs half, as in
    the authors' code), or, for batches without them (sequences), the union of the batch users'
    teacher top-`topk` lists. Experts and selectors are built in `setup` and trained with the
    student. The Gumbel noise comes from torch's global generator.
    """

    name = "de"
    needs = frozenset({"user_repr", "item_repr", "topk_items"})
    Params = DEParams

    def __init__(self, params: DEParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        assert p.n_experts > 0 and p.anneal_epochs > 0 and p.topk > 0, f"de: counts must be > 0, got {p}"
        assert 0 < p.final_temperature <= p.initial_temperature, (
            f"de: need 0 < final_temperature <= initial_temperature, got {p}"
        )
        self.temperature = p.initial_temperature
        self.user_experts: ExpertMixture | None = None
        self.item_experts: ExpertMixture | None = None

    def setup(self, knowledge: TeacherKnowledge, student_hidden_dim: int) -> None:
        """Keep the teacher's representations and build the user and item experts."""
        super().setup(knowledge, student_hidden_dim)
        teacher_dim = self.teacher["user_repr"].shape[1]
        assert self.teacher["item_repr"].shape[1] == teacher_dim, "de: teacher user and item dims differ"
        self.user_experts = ExpertMixture(student_hidden_dim, teacher_dim, self.params.n_experts)
        self.item_experts = ExpertMixture(student_hidden_dim, teacher_dim, self.params.n_experts)

    def ranks_needed(self) -> dict[str, int]:
        """The kept top-N lists must hold at least `topk` items."""
        return {"topk": self.params.topk}

    def on_epoch_start(self, epoch: int) -> None:
        """Anneal the Gumbel-softmax temperature."""
        super().on_epoch_start(epoch)
        p = self.params
        self.temperature = annealed_temperature(epoch, p.initial_temperature, p.final_temperature, p.anneal_epochs)

    def loss(self, student_output: RankingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(User term + mean of the item groups' terms) / final rows (see module docstring)."""
        assert self.user_experts is not None and self.item_experts is not None, "de: call setup() before loss()"
        users, state = self.final_users(student_output, batch)  # (F,), (F, D)
        if len(users) == 0:
            return self.zero(student_output)
        device = state.device
        user_term = self.user_experts.squared_error(state, self.teacher_for("user_repr", users, device),
                                                    self.temperature)
        item_terms = [
            self.item_experts.squared_error(student_output.model.item_vectors(items),  # (n, D)
                                            self.teacher_items(items, device), self.temperature)
            for items in self.batch_items(batch, users, self.params.topk)
        ]
        return (user_term + torch.stack(item_terms).mean()) / self.n_final(batch)
