"""`FTD` and `HTD`: Topology Distillation (Kang, Hwang, Kweon & Yu, KDD 2021, "Topology
Distillation for Recommender System").

The topology of a batch is the matrix of cosine similarities between its entities: the batch's
final-row users and the items it touches. FTD (full topology) makes the student's matrix match
the teacher's. HTD (hierarchical) suits small students: a learned assignment groups entities by
their teacher representation, and the student matches the teacher's topology within each group
(entity level) and between group prototypes and entities (group level), while the group
assignment itself is learned by distillation experts reconstructing the teacher's representation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.ranking_strategy import RankingStrategy
from recdistill.distill.strategies.de import ExpertMixture, annealed_temperature
from recdistill.errors import ConfigError
from recdistill.models.ranking_base import RankingOutput
from recdistill.utils.config_checks import at_most, bounded, value_rules

#: HTD group-level topology: prototype-entity similarities (the code's 'second', its default) or
#: prototype-prototype similarities ('first').
GROUP_TOPOLOGIES = ("entity", "prototype")


def cosine_matrix(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """(n, m) cosine similarities between the rows of left (n, D) and right (m, D)."""
    return F.normalize(left, dim=-1) @ F.normalize(right, dim=-1).T  # (n, m)


def topology_error(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """sum over all pairs (a, b) of rows of (cos_s(a, b) - cos_t(a, b))^2, for student (n, Ds) and
    teacher (n, Dt), as a 0-d tensor of the student's dtype.

    With S and T the row-normalised matrices, the sum is ||S S^T - T T^T||_F^2
    = ||S^T S||^2 - 2 ||S^T T||^2 + ||T^T T||^2: Gram matrices of the dimensions, O(n D^2) instead of
    the O(n^2 D) of the n x n similarity matrices, computed in float64 so that the difference of
    large sums loses nothing."""
    s = F.normalize(student.double(), dim=-1)  # (n, Ds)
    t = F.normalize(teacher.double(), dim=-1)  # (n, Dt)
    return _normalized_topology_error(s, t).to(student.dtype)


def _normalized_topology_error(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`topology_error` of rows already normalised: by the (n, n) similarity matrices when they are
    cheaper (n < Ds + Dt, small groups), else by the Gram matrices of the dimensions."""
    if len(s) < s.shape[1] + t.shape[1]:
        return (s @ s.T - t @ t.T).pow(2).sum()
    return (s.T @ s).pow(2).sum() - 2 * (s.T @ t).pow(2).sum() + (t.T @ t).pow(2).sum()


class TopologyStrategy(RankingStrategy):
    """Shared by FTD and HTD: the batch's entities as (student, teacher) representation pairs."""

    def entities(self, output: RankingOutput, batch: dict[str, torch.Tensor], topk: int
                 ) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """(student (n, D), teacher (n, Dt), number of users first in the rows), or None when the
        batch has no final row. Items: unique `pos` and `neg` of final rows, else the users'
        teacher top-`topk` (see `RankingStrategy.batch_items`)."""
        users, state = self.final_users(output, batch)  # (F,), (F, D)
        if len(users) == 0:
            return None
        items = torch.cat(self.batch_items(batch, users, topk)).unique()  # (m,)
        device = state.device
        student = torch.cat([state, output.model.item_vectors(items)])  # (F + m, D)
        teacher = torch.cat([self.teacher_for("user_repr", users, device),
                             self.teacher_items(items, device)]).to(student.dtype)  # (F + m, Dt)
        return student, teacher, len(users)


@dataclass
class FTDParams:
    """Hyperparameters of `FTD`."""

    topk: int = bounded(10, ge=1)  # items from the teacher's top-K per user when the batch has no `pos`/`neg`


class FTD(TopologyStrategy):
    """sum_{a,b} (cos_student(a, b) - cos_teacher(a, b))^2 over all pairs of the batch's entities
    (users and items together), divided by the number of final rows (the authors' sum over pairs,
    rescaled to a base loss averaged over rows). Like the authors' term it grows with the batch:
    about (users + items)^2 / rows pairs per row, so retune the weight with the batch size."""

    name = "ftd"
    needs = frozenset({"user_repr", "item_repr", "topk_items"})
    Params = FTDParams

    def ranks_needed(self) -> dict[str, int]:
        """The kept top-N lists must hold at least `topk` items."""
        return {"topk": self.params.topk}

    def loss(self, student_output: RankingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Squared error between the student's and the teacher's full topology."""
        found = self.entities(student_output, batch, self.params.topk)
        if found is None:
            return self.zero(student_output)
        student, teacher, _ = found  # (n, D), (n, Dt)
        return topology_error(student, teacher) / self.n_final(batch)


@value_rules(at_most("final_temperature", "initial_temperature"))  # the temperature cools down
@dataclass
class HTDParams:
    """Hyperparameters of `HTD` (defaults: the authors' released code)."""

    n_groups: int = bounded(30, ge=1)  # K, groups per side (users, items): experts of the group assignment
    alpha: float = bounded(0.5, ge=0, le=1)  # loss = alpha * topology + (1 - alpha) * group assignment
    # group level: "entity" (prototype-entity) or "prototype" (prototype-prototype)
    group_topology: str = bounded("entity", choices=GROUP_TOPOLOGIES)
    initial_temperature: float = bounded(1.0, gt=0)  # group-assignment Gumbel-softmax temperature in the first epoch
    final_temperature: float = bounded(1e-10, gt=0)  # annealed geometrically down to this
    anneal_epochs: int = bounded(100, ge=1)  # epochs over which the temperature goes from initial to final
    topk: int = bounded(10, ge=1)  # items from the teacher's top-K per user when the batch has no `pos`/`neg`


class HTD(TopologyStrategy):
    """Hierarchical topology distillation (see module docstring).

    Group assignment: per side, `n_groups` experts and a selector over the teacher representation
    (as in `DE`); the experts' reconstruction error trains the selector (Gumbel-softmax) and the
    entity's group is the selector's argmax (users' and items' groups are distinct).
    Topology, with S the cosine matrices and P the mean representation of each present group:
    entity level  sum over same-group pairs (a, b) of (S_s(a, b) - S_t(a, b))^2;
    group level   sum over (group, entity) of (S_s(P_g, e) - S_t(P_g, e))^2 ("entity"), or over
                  (group, group) pairs of prototypes ("prototype").
    Like the authors' code: sums (here divided by the number of final rows, as FTD), prototypes
    without gradient (only the entities get one), group assignment error summed over users and
    items. One difference: the code also drops same-group pairs whose teacher similarity is <= 0
    (a side effect of how it selects the masked entries); here every same-group pair counts.
    """

    name = "htd"
    needs = frozenset({"user_repr", "item_repr", "topk_items"})
    Params = HTDParams

    def __init__(self, params: HTDParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        if p.group_topology not in GROUP_TOPOLOGIES:
            raise ConfigError(f"distill.terms.htd.group_topology must be one of {list(GROUP_TOPOLOGIES)}, "
                              f"got {p.group_topology!r}")
        assert p.n_groups > 0 and p.anneal_epochs > 0 and 0 <= p.alpha <= 1, f"htd: invalid params {p}"
        assert 0 < p.final_temperature <= p.initial_temperature, (
            f"htd: need 0 < final_temperature <= initial_temperature, got {p}"
        )
        self.temperature = p.initial_temperature
        self.user_groups: ExpertMixture | None = None
        self.item_groups: ExpertMixture | None = None

    def setup(self, knowledge: TeacherKnowledge, student_hidden_dim: int) -> None:
        """Keep the teacher's representations and build the group assignment of each side."""
        super().setup(knowledge, student_hidden_dim)
        teacher_dim = self.teacher["user_repr"].shape[1]
        self.user_groups = ExpertMixture(student_hidden_dim, teacher_dim, self.params.n_groups)
        self.item_groups = ExpertMixture(student_hidden_dim, teacher_dim, self.params.n_groups)

    def ranks_needed(self) -> dict[str, int]:
        """The kept top-N lists must hold at least `topk` items."""
        return {"topk": self.params.topk}

    def on_epoch_start(self, epoch: int) -> None:
        """Anneal the group assignment's Gumbel-softmax temperature."""
        super().on_epoch_start(epoch)
        p = self.params
        self.temperature = annealed_temperature(epoch, p.initial_temperature, p.final_temperature, p.anneal_epochs)

    def topology(self, student: torch.Tensor, teacher: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Entity-level plus group-level squared errors (sums) for entities in `groups` (n,).

        The entity level is `topology_error` within each present group (a loop over groups, each in
        O(size D^2)), never the n x n matrices."""
        membership = F.one_hot(groups).to(student.dtype)  # (n, G_all)
        membership = membership[:, membership.sum(0) > 0]  # (n, G) present groups only
        order = torch.argsort(groups)
        sizes = torch.bincount(groups)
        normalized = F.normalize(student.double(), dim=-1), F.normalize(teacher.double(), dim=-1)  # (n, Ds), (n, Dt)
        entity_level = sum(_normalized_topology_error(normalized[0][members], normalized[1][members])
                           for members in torch.split(order, sizes[sizes > 0].tolist())).to(student.dtype)
        with torch.no_grad():
            averaging = membership.T / membership.sum(0)[:, None]  # (G, n)
            student_prototypes = averaging @ student  # (G, D)
            teacher_prototypes = averaging @ teacher  # (G, Dt)
        if self.params.group_topology == "entity":
            group_error = (cosine_matrix(student_prototypes, student)
                           - cosine_matrix(teacher_prototypes, teacher))  # (G, n)
        else:
            group_error = (cosine_matrix(student_prototypes, student_prototypes)
                           - cosine_matrix(teacher_prototypes, teacher_prototypes))  # (G, G)
        return entity_level + group_error.pow(2).sum()

    def loss(self, student_output: RankingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[alpha * (entity + group level topology) + (1 - alpha) * group-assignment error] / final rows."""
        assert self.user_groups is not None and self.item_groups is not None, "htd: call setup() before loss()"
        found = self.entities(student_output, batch, self.params.topk)
        if found is None:
            return self.zero(student_output)
        student, teacher, n_users = found  # (n, D), (n, Dt)
        groups = torch.cat([self.user_groups.assign(teacher[:n_users]),
                            self.item_groups.assign(teacher[n_users:]) + self.params.n_groups])  # (n,)
        assignment = (self.user_groups.squared_error(student[:n_users], teacher[:n_users], self.temperature)
                      + self.item_groups.squared_error(student[n_users:], teacher[n_users:], self.temperature))
        alpha = self.params.alpha
        total = alpha * self.topology(student, teacher, groups) + (1 - alpha) * assignment
        return total / self.n_final(batch)
