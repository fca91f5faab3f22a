"""Top-K ranking distillation strategies on tiny hand-computed examples, with a fixed-embedding student."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from recdistill.distill import ranking_strategy
from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.objective import build_objective
from recdistill.distill.ranking_strategy import (
    TEACHER_ROWS_PER_GATHER,
    RankingStrategy,
    rank_discount_sample,
    sample_outside,
)
from recdistill.distill.registry import get_strategy_class
from recdistill.distill.strategies.cd import CD, CDParams
from recdistill.distill.strategies.de import (
    DE,
    DEParams,
    ExpertMixture,
    annealed_temperature,
)
from recdistill.distill.strategies.rd import RD, RDParams
from recdistill.distill.strategies.rrd import RRD, RRDParams
from recdistill.distill.strategies.score_kd import ScoreKD, ScoreKDParams
from recdistill.distill.strategies.topology import (
    FTD, HTD, FTDParams, HTDParams, cosine_matrix, topology_error,
)
from recdistill.errors import ConfigError
from recdistill.models.ranking_base import RankingModel, RankingOutput

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "distill"
RANKING_CONFIGS = ["rd", "cd", "rrd", "de", "ftd", "htd", "score_kd", "de_rrd"]
NEEDS = {
    "rd": {"topk_items"},
    "cd": {"topk_items", "topk_scores"},
    "rrd": {"topk_items"},
    "de": {"user_repr", "item_repr", "topk_items"},
    "ftd": {"user_repr", "item_repr", "topk_items"},
    "htd": {"user_repr", "item_repr", "topk_items"},
    "score_kd": {"user_repr", "item_repr", "topk_items"},
}


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


class FixedModel(RankingModel):
    """A student whose state is a user embedding and whose score is state . item embedding."""

    def __init__(self, users: list[list[float]], items: list[list[float]]) -> None:
        super().__init__()
        self.user_table = nn.Parameter(torch.tensor(users, dtype=torch.float32))
        self.item_table = nn.Parameter(torch.tensor(items, dtype=torch.float32))
        self.hidden_dim = self.user_table.shape[1]

    def forward(self, batch: dict[str, torch.Tensor]) -> RankingOutput:
        return RankingOutput(self.user_table[batch["user"]], self, {})

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_table[items]


def knowledge(topk_items: list[list[int]], n_items: int, user_repr: list[list[float]] | None = None,
              item_repr: list[list[float]] | None = None, topk_scores: list[list[float]] | None = None,
              keep: set[str] | None = None) -> TeacherKnowledge:
    tensors = {"topk_items": torch.tensor(topk_items, dtype=torch.long)}
    if user_repr is not None:
        tensors["user_repr"] = torch.tensor(user_repr, dtype=torch.float32)
        tensors["item_repr"] = torch.tensor(item_repr, dtype=torch.float32)
    if topk_scores is not None:
        tensors["topk_scores"] = torch.tensor(topk_scores, dtype=torch.float32)
    if keep is not None:
        tensors = {kind: tensors[kind] for kind in keep}
    meta = {"n_users": len(topk_items), "n_items": n_items, "topk": len(topk_items[0])}
    return TeacherKnowledge("teacher", tensors, meta)


def random_knowledge(n_users: int = 6, n_items: int = 300, topk: int = 100, dim: int = 8) -> TeacherKnowledge:
    generator = torch.Generator().manual_seed(1)
    user_repr = torch.randn(n_users, dim, generator=generator)
    item_repr = torch.randn(n_items, dim, generator=generator)
    scores, items = (user_repr @ item_repr.T).topk(topk, dim=1)
    items[-1], scores[-1] = -1, float("-inf")  # a user without training items
    tensors = {"topk_items": items, "topk_scores": scores, "user_repr": user_repr, "item_repr": item_repr}
    return TeacherKnowledge("teacher", tensors, {"n_users": n_users, "n_items": n_items, "topk": topk})


def random_student(n_users: int = 6, n_items: int = 300, dim: int = 4) -> FixedModel:
    generator = torch.Generator().manual_seed(2)
    return FixedModel(torch.randn(n_users, dim, generator=generator).tolist(),
                      torch.randn(n_items, dim, generator=generator).tolist())


def pairs(users: list[int], pos: list[int], neg: list[list[int]], final: list[bool] | None = None) -> dict:
    final = final if final is not None else [True] * len(users)
    return {"user": torch.tensor(users), "pos": torch.tensor(pos), "neg": torch.tensor(neg),
            "final": torch.tensor(final)}


def rows(users: list[int], final: list[bool] | None = None) -> dict:
    final = final if final is not None else [True] * len(users)
    return {"user": torch.tensor(users), "final": torch.tensor(final)}


def value(loss: torch.Tensor) -> float:
    return loss.detach().item()


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def setup(strategy: RankingStrategy, teacher: TeacherKnowledge, dim: int) -> RankingStrategy:
    strategy.setup(teacher, student_hidden_dim=dim)
    return strategy


# --- contract ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_every_ranking_strategy_declares_its_task_and_exact_needs(name: str) -> None:
    cls = get_strategy_class(name)
    assert cls.task == "ranking" and issubclass(cls, RankingStrategy)
    assert cls.needs == NEEDS[name]


@pytest.mark.parametrize("name", RANKING_CONFIGS)
def test_every_ranking_config_builds_and_trains_on_only_its_needs(name: str) -> None:
    objective = build_objective(OmegaConf.load(CONFIGS / f"{name}.yaml"), task="ranking")
    full = random_knowledge()
    # Knowledge holding only what the objective declares: reading anything else would fail.
    objective.setup(TeacherKnowledge("teacher", {k: full[k] for k in objective.needs}, full.meta), 4)
    objective.on_epoch_start(20)
    student = random_student()
    for batch in (pairs([0, 1, 1, 2], [3, 4, 5, 6], [[7], [8], [9], [10]]), rows([0, 3, 4])):
        student.zero_grad()
        terms = objective({"bpr": torch.tensor(0.0)}, student(batch), batch)
        assert all(torch.isfinite(value) for value in terms.values()), terms
        terms["loss"].backward()
        assert student.user_table.grad.abs().sum() > 0, f"{name}: no gradient reaches the student"


@pytest.mark.parametrize("name", RANKING_CONFIGS)
def test_batches_without_final_rows_give_a_differentiable_zero(name: str) -> None:
    objective = build_objective(OmegaConf.load(CONFIGS / f"{name}.yaml"), task="ranking")
    objective.setup(random_knowledge(), 4)
    student = random_student()
    batch = pairs([0, 1], [3, 4], [[7], [8]], final=[False, False])
    terms = objective({"bpr": torch.tensor(0.0)}, student(batch), batch)
    for term in objective.strategies:
        assert value(terms[term]) == 0.0
    terms["loss"].backward()  # the graph stays valid


def test_ranking_strategies_are_rejected_on_the_rating_task() -> None:
    with pytest.raises(ConfigError, match="ranking task"):
        build_objective(OmegaConf.load(CONFIGS / "rrd.yaml"), task="rating")


def test_too_short_teacher_lists_are_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"distill.terms.rrd.n_interesting=5, but the teacher knowledge keeps only "
                                          r"the top 3 items \(distill.teacher_topk\); raise distill.teacher_topk"):
        setup(RRD(RRDParams(n_interesting=5)), knowledge([[0, 1, 2]], n_items=10), 1)


# --- samplers -----------------------------------------------------------------------------------------


def test_rank_discount_sample_follows_exp_minus_rank_over_temperature() -> None:
    # P(first draw = rank r) = exp(-(r+1)/T) / sum_j exp(-(j+1)/T); T = 2, N = 4.
    weights = [math.exp(-(r + 1) / 2) for r in range(4)]
    expected = [w / sum(weights) for w in weights]
    draws = rank_discount_sample(torch.ones(20000, 4, dtype=torch.bool), 1, 2.0, torch.Generator().manual_seed(0))
    frequency = torch.bincount(draws[:, 0], minlength=4).float() / 20000
    assert torch.allclose(frequency, torch.tensor(expected), atol=0.01)


def test_rank_discount_sample_is_without_replacement_sorted_and_puts_invalid_ranks_last() -> None:
    valid = torch.tensor([[True] * 6, [True, True, False, False, False, False]])
    ranks = rank_discount_sample(valid, 4, 3.0, torch.Generator().manual_seed(0))
    assert all(len(set(row.tolist())) == 4 for row in ranks)
    assert torch.equal(ranks, ranks.sort(dim=1).values)
    assert ranks[1].tolist() == [0, 1, 2, 3]  # both valid ranks, then invalid ones in rank order
    cold = rank_discount_sample(torch.ones(3, 10, dtype=torch.bool), 3, 1e-3, torch.Generator().manual_seed(0))
    assert cold.tolist() == [[0, 1, 2]] * 3  # a tiny temperature keeps the top ranks


@pytest.mark.parametrize("dense_cells", [0, 1 << 26], ids=["binary_search", "dense_mask"])
def test_sample_outside_never_returns_excluded_items(dense_cells: int, monkeypatch) -> None:
    monkeypatch.setattr(ranking_strategy, "DENSE_EXCLUSION_CELLS", dense_cells)
    excluded = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7], [9, 8, 7, 6, 5, 4, 3, -1]])
    drawn = sample_outside(excluded, 500, 10, torch.Generator().manual_seed(0))
    assert set(drawn[0].tolist()) == {8, 9}
    assert set(drawn[1].tolist()) == {0, 1, 2}


def test_sample_outside_draws_the_same_items_with_a_dense_mask_and_by_binary_search(monkeypatch) -> None:
    excluded = torch.randint(-1, 50, (30, 20), generator=torch.Generator().manual_seed(0))  # repeats, -1 too
    drawn = {}
    for cells in (0, 1 << 26):
        monkeypatch.setattr(ranking_strategy, "DENSE_EXCLUSION_CELLS", cells)
        drawn[cells] = sample_outside(excluded, 40, 50, torch.Generator().manual_seed(3))
    assert torch.equal(drawn[0], drawn[1 << 26])
    assert not (drawn[0][:, :, None] == excluded[:, None, :]).any()


@pytest.mark.parametrize(("table_cells", "ratio"), [(0, 0), (0, 1000), (1 << 25, 0)],
                         ids=["gather_blocks", "full_catalogue_matmul", "score_table"])
def test_teacher_scores_of_per_user_items_are_user_repr_dot_item_repr(table_cells: int, ratio: int,
                                                                      monkeypatch) -> None:
    monkeypatch.setattr(ranking_strategy, "TEACHER_SCORE_TABLE_CELLS", table_cells)
    monkeypatch.setattr(ranking_strategy, "FULL_CATALOGUE_RATIO", ratio)
    teacher = random_knowledge(n_users=150, n_items=40, topk=5)
    strategy = setup(ScoreKD(ScoreKDParams(candidates="topk_sampled", topk=5, n_samples=3)), teacher, 4)
    users = torch.randint(0, 150, (TEACHER_ROWS_PER_GATHER * 2 + 7,), generator=torch.Generator().manual_seed(0))
    items = torch.randint(0, 40, (len(users), 9), generator=torch.Generator().manual_seed(1))  # (F, n)
    user_repr, item_repr = teacher.tensors["user_repr"], teacher.tensors["item_repr"]
    expected = (user_repr[users][:, None, :] * item_repr[items]).sum(-1)  # (F, n)
    torch.testing.assert_close(strategy.teacher_scores(users, items, torch.device("cpu")), expected)
    assert strategy.teacher_scores(users[:0], items[:0], torch.device("cpu")).shape == (0, 9)


@pytest.mark.parametrize("make", [
    lambda: RRD(RRDParams(n_interesting=5, n_uninteresting=7, temperature=3.0)),
    lambda: CD(CDParams(n_samples=5, rank_temperature=3.0)),
])
def test_per_epoch_samples_are_reproducible(make) -> None:
    teacher = random_knowledge(n_users=5, n_items=60, topk=20)

    def draw(epoch: int) -> list[torch.Tensor]:
        strategy = setup(make(), teacher, 4)
        strategy.on_epoch_start(epoch)
        return [t.clone() for t in (strategy.interesting, strategy.uninteresting)] if isinstance(strategy, RRD) \
            else [strategy.samples.clone()]

    assert all(torch.equal(a, b) for a, b in zip(draw(3), draw(3)))
    assert not all(torch.equal(a, b) for a, b in zip(draw(3), draw(4)))


def test_rrd_samples_interesting_from_the_top_list_and_uninteresting_from_below_it() -> None:
    teacher = random_knowledge(n_users=5, n_items=60, topk=20)
    strategy = setup(RRD(RRDParams(n_interesting=5, n_uninteresting=50)), teacher, 4)
    assert strategy.interesting.shape == (5, 5) and strategy.uninteresting.shape == (5, 50)
    assert torch.equal(strategy.interesting, strategy.interesting.sort(dim=1).values)  # teacher order
    top = teacher["topk_items"]
    for user in range(4):
        assert not set(strategy.uninteresting[user].tolist()) & set(top[user].tolist())


# --- RD -----------------------------------------------------------------------------------------------

# Student scores are user . item with 1-D embeddings; user 0 = 1, user 1 = 2.
RD_ITEMS = [[0.0], [1.0], [2.0], [-1.0], [0.5], [3.0]]
RD_TOPK = [[1, 2, 0], [5, 4, 3]]


def rd_expected(scores: list[float], lambda_: float = 1.0) -> float:
    weights = [math.exp(-r / lambda_) for r in (1, 2, 3)]
    return -sum(w / sum(weights) * log_sigmoid(s) for w, s in zip(weights, scores))


def test_rd_is_position_weighted_log_loss_on_the_teacher_top_k() -> None:
    # User 0's top items score [1, 2, 0]; user 1's (x2) [6, 1, -2]; mean over the two final rows.
    strategy = setup(RD(RDParams(topk=3, dynamic=False)), knowledge(RD_TOPK, 6), 1)
    student = FixedModel([[1.0], [2.0]], RD_ITEMS)
    batch = rows([0, 1])
    expected = (rd_expected([1, 2, 0]) + rd_expected([6, 1, -2])) / 2
    assert value(strategy.loss(student(batch), batch)) == pytest.approx(expected, rel=1e-5)


def test_rd_counts_only_final_rows() -> None:
    strategy = setup(RD(RDParams(topk=3, dynamic=False)), knowledge(RD_TOPK, 6), 1)
    student = FixedModel([[1.0], [2.0]], RD_ITEMS)
    batch = rows([0, 1], final=[True, False])
    assert value(strategy.loss(student(batch), batch)) == pytest.approx(rd_expected([1, 2, 0]), rel=1e-5)


def test_rd_is_lower_when_the_teacher_top_items_score_higher() -> None:
    strategy = setup(RD(RDParams(topk=3, dynamic=False)), knowledge(RD_TOPK, 6), 1)
    batch = rows([0, 1])
    low = FixedModel([[1.0], [2.0]], RD_ITEMS)
    high = FixedModel([[1.0], [2.0]], [[x + 2] for (x,) in RD_ITEMS])
    assert value(strategy.loss(high(batch), batch)) < value(strategy.loss(low(batch), batch))


def test_rd_dynamic_weight_follows_the_estimated_student_rank() -> None:
    # w_r = position_r * max(tanh(mu * (floor(I * #drawn scoring higher / S) - r)), 0), r from 0.
    params = RDParams(topk=3, mu=0.5, dynamic=True, dynamic_start=2, n_samples=8)
    strategy = setup(RD(params), knowledge(RD_TOPK, 6), 1)
    student = FixedModel([[1.0], [2.0]], RD_ITEMS)
    batch = rows([0, 1])
    strategy.on_epoch_start(2)  # not after dynamic_start yet: position weights only
    static = (rd_expected([1, 2, 0]) + rd_expected([6, 1, -2])) / 2
    assert value(strategy.loss(student(batch), batch)) == pytest.approx(static, rel=1e-5)

    strategy.on_epoch_start(3)
    strategy.generator = torch.Generator().manual_seed(7)
    draws = torch.randint(6, (2, 8), generator=torch.Generator().manual_seed(7)).tolist()
    position = [math.exp(-r) for r in (1, 2, 3)]
    position = [w / sum(position) for w in position]
    expected = 0.0
    for user, scale in enumerate((1.0, 2.0)):
        scores = [scale * RD_ITEMS[item][0] for item in RD_TOPK[user]]
        drawn = [scale * RD_ITEMS[item][0] for item in draws[user]]
        for r, score in enumerate(scores):
            rank = math.floor(6 * sum(d > score for d in drawn) / 8)
            weight = position[r] * max(math.tanh(0.5 * (rank - r)), 0.0)
            expected -= weight * log_sigmoid(score) / 2
    assert value(strategy.loss(student(batch), batch)) == pytest.approx(expected, rel=1e-5, abs=1e-9)


# --- CD -----------------------------------------------------------------------------------------------


def test_cd_is_bce_against_sigmoid_of_teacher_scores_over_tempered_temperature() -> None:
    # n_samples = the whole kept list, so the sampled set is fixed: BCE summed over it.
    teacher = knowledge([[1, 2, 0], [5, 4, 3]], 6, topk_scores=[[4.0, 2.0, -1.0], [3.0, 0.0, -2.0]])
    strategy = setup(CD(CDParams(n_samples=3, temperature=2.0)), teacher, 1)
    student = FixedModel([[1.0], [2.0]], RD_ITEMS)
    batch = rows([0, 1])

    def bce(score: float, label: float) -> float:
        return -(label * log_sigmoid(score) + (1 - label) * log_sigmoid(-score))

    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    user0 = sum(bce(s, sigmoid(t / 2)) for s, t in zip([1, 2, 0], [4.0, 2.0, -1.0]))
    user1 = sum(bce(s, sigmoid(t / 2)) for s, t in zip([6, 1, -2], [3.0, 0.0, -2.0]))
    assert value(strategy.loss(student(batch), batch)) == pytest.approx((user0 + user1) / 2, rel=1e-5)
    only_first = rows([0, 1], final=[True, False])
    assert value(strategy.loss(student(only_first), only_first)) == pytest.approx(user0, rel=1e-5)


# --- RRD ----------------------------------------------------------------------------------------------


def rrd_expected(interesting: list[float], uninteresting: list[float]) -> float:
    below = sum(math.exp(u) for u in uninteresting)
    return -sum(s - math.log(sum(math.exp(x) for x in interesting[k:]) + below)
                for k, s in enumerate(interesting))


def test_rrd_is_the_relaxed_plackett_luce_loss_in_teacher_order() -> None:
    # 4 items, top-3 kept: every top item is interesting (teacher order), the fourth is the only
    # uninteresting one. Users are summed once each and divided by the 3 final rows.
    teacher = knowledge([[2, 0, 1], [1, 2, 3]], 4)
    strategy = setup(RRD(RRDParams(n_interesting=3, n_uninteresting=1, temperature=1.0)), teacher, 1)
    student = FixedModel([[1.0], [-1.0]], [[0.5], [2.0], [1.0], [-1.0]])
    batch = rows([0, 0, 1])
    user0 = rrd_expected([1.0, 0.5, 2.0], [-1.0])
    user1 = rrd_expected([-2.0, -1.0, 1.0], [-0.5])
    assert value(strategy.loss(student(batch), batch)) == pytest.approx((user0 + user1) / 3, rel=1e-5)


def test_rrd_is_lower_when_the_student_follows_the_teacher_order() -> None:
    teacher = knowledge([[0, 1, 2]], 4)
    strategy = setup(RRD(RRDParams(n_interesting=3, n_uninteresting=1)), teacher, 1)
    batch = rows([0])
    agree = FixedModel([[1.0]], [[3.0], [2.0], [1.0], [0.0]])
    disagree = FixedModel([[1.0]], [[0.0], [1.0], [2.0], [3.0]])
    assert value(strategy.loss(agree(batch), batch)) < value(strategy.loss(disagree(batch), batch))


# --- DE -----------------------------------------------------------------------------------------------

USER_REPR = [[1.0, 0.0], [0.0, 2.0]]
ITEM_REPR = [[0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [1.0, -1.0], [3.0, 1.0]]
TOPK = [[4, 3, 2], [0, 1, 2]]


def squared_norm(vector: list[float]) -> float:
    return sum(x * x for x in vector)


def zero_experts(mixture: ExpertMixture) -> None:
    nn.init.zeros_(mixture.out_weight)
    nn.init.zeros_(mixture.out_bias)


def test_de_experts_are_strategy_parameters_built_in_setup() -> None:
    strategy = setup(DE(DEParams(n_experts=3, topk=2)), knowledge(TOPK, 5, USER_REPR, ITEM_REPR), 4)
    names = {name for name, _ in strategy.named_parameters()}
    assert {"user_experts.hidden_weight", "item_experts.out_bias", "item_experts.selector.weight"} <= names
    # per side: stacked expert weights and biases (2 layers) + selector weight and bias
    assert len(list(strategy.parameters())) == 2 * (4 + 2)
    experts = strategy.user_experts
    assert experts.hidden_weight.shape[:2] == (3, 4) and experts.out_weight.shape[::2] == (3, 2)


def test_de_with_silent_experts_is_the_teacher_norms_of_users_and_half_of_each_item_group() -> None:
    # Experts output 0, so each term is ||t||^2: users {0, 1}, pos {0, 1}, neg {2, 3}, 3 final rows.
    strategy = setup(DE(DEParams(n_experts=1, topk=2)), knowledge(TOPK, 5, USER_REPR, ITEM_REPR), 2)
    zero_experts(strategy.user_experts)
    zero_experts(strategy.item_experts)
    student = FixedModel([[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0]] * 5)
    batch = pairs([0, 1, 1], [0, 1, 1], [[2], [2], [3]])
    users = squared_norm(USER_REPR[0]) + squared_norm(USER_REPR[1])
    items = (squared_norm(ITEM_REPR[0]) + squared_norm(ITEM_REPR[1])
             + squared_norm(ITEM_REPR[2]) + squared_norm(ITEM_REPR[3])) / 2
    assert value(strategy.loss(student(batch), batch)) == pytest.approx((users + items) / 3, rel=1e-5)
    # Without pos/neg (sequence batches) the items are the users' teacher top-2: {4, 3} | {0, 1}.
    sequences = rows([0, 1])
    top = sum(squared_norm(ITEM_REPR[i]) for i in (0, 1, 3, 4))
    assert value(strategy.loss(student(sequences), sequences)) == pytest.approx((users + top) / 2, rel=1e-5)


def test_de_gradients_reach_the_student_and_the_experts() -> None:
    strategy = setup(DE(DEParams(n_experts=3, topk=2)), knowledge(TOPK, 5, USER_REPR, ITEM_REPR), 3)
    student = FixedModel([[0.1, 0.2, 0.3], [0.3, 0.1, 0.2]], [[0.1 * i, 0.2, -0.1] for i in range(5)])
    batch = pairs([0, 1], [0, 1], [[2], [3]])
    strategy.loss(student(batch), batch).backward()
    assert student.user_table.grad.abs().sum() > 0 and student.item_table.grad.abs().sum() > 0
    assert strategy.user_experts.selector.weight.grad.abs().sum() > 0


def test_de_anneals_the_gumbel_temperature_geometrically() -> None:
    assert annealed_temperature(1, 1.0, 1e-10, 1000) == 1.0
    assert annealed_temperature(501, 1.0, 1e-10, 1000) == pytest.approx(1e-5)
    assert annealed_temperature(5000, 1.0, 1e-10, 1000) == 1e-10
    teacher = knowledge(TOPK, 5, USER_REPR, ITEM_REPR)
    strategy = setup(DE(DEParams(anneal_epochs=10, final_temperature=0.01, topk=2)), teacher, 2)
    strategy.on_epoch_start(6)
    assert strategy.temperature == pytest.approx(0.1)


def test_a_cold_gumbel_softmax_selects_exactly_one_expert() -> None:
    mixture = ExpertMixture(3, 2, n_experts=4)
    student, teacher = torch.randn(16, 3), torch.randn(16, 2)
    mixed = mixture(student, teacher, temperature=1e-10)  # (16, 2)
    each = mixture.each_expert(student)  # (4, 16, 2)
    distance = (each - mixed).abs().amax(-1).amin(0)  # (16,) closest expert per row
    assert torch.all(distance < 1e-6)


def test_the_mixture_mixes_each_experts_output_by_the_gumbel_weights() -> None:
    mixture = ExpertMixture(3, 5, n_experts=4)
    student, teacher = torch.randn(6, 3), torch.randn(6, 5)
    torch.manual_seed(7)
    mixed = mixture(student, teacher, temperature=2.0)  # (6, 5)
    torch.manual_seed(7)
    weights = mixture.select(teacher, 2.0)  # (6, 4) the same Gumbel draw
    each = mixture.each_expert(student)  # (4, 6, 5)
    expected = torch.stack([
        sum(weights[row, e] * (torch.relu(student[row] @ mixture.hidden_weight[e] + mixture.hidden_bias[e])
                               @ mixture.out_weight[e] + mixture.out_bias[e]) for e in range(4))
        for row in range(6)
    ])
    assert torch.allclose(mixed, expected, atol=1e-5)
    assert torch.allclose((each * weights.T[:, :, None]).sum(0), expected, atol=1e-5)


# --- FTD / HTD ----------------------------------------------------------------------------------------

TD_USER = [[1.0, 0.0]]
TD_ITEMS_TEACHER = [[0.0, 1.0], [1.0, 1.0]]
TD_ITEMS_STUDENT = [[1.0, 0.0], [0.0, 1.0]]


def test_ftd_is_the_squared_error_between_cosine_matrices() -> None:
    # Entities u0, i0, i1. Teacher cosines: u0-i0 0, u0-i1 1/sqrt2, i0-i1 1/sqrt2; student: 1, 0, 0.
    # Each off-diagonal pair counts twice: 2 * (1 + 1/2 + 1/2) = 4, over 1 final row.
    teacher = knowledge([[0, 1]], 3, TD_USER, TD_ITEMS_TEACHER + [[1.0, 0.0]])
    strategy = setup(FTD(FTDParams(topk=2)), teacher, 2)
    student = FixedModel(TD_USER, TD_ITEMS_STUDENT + [[1.0, 0.0]])
    batch = pairs([0], [0], [[1]])
    assert value(strategy.loss(student(batch), batch)) == pytest.approx(4.0, rel=1e-5)


def test_ftd_ignores_rows_that_are_not_final_and_is_zero_for_a_copy_of_the_teacher() -> None:
    teacher = knowledge([[0, 1], [2, 0]], 3, [[1.0, 0.0], [0.5, 0.5]], TD_ITEMS_TEACHER + [[1.0, -2.0]])
    strategy = setup(FTD(FTDParams(topk=2)), teacher, 2)
    student = FixedModel([[1.0, 0.0], [3.0, 1.0]], TD_ITEMS_STUDENT + [[0.0, -1.0]])
    only = pairs([0], [0], [[1]])
    with_extra = pairs([0, 1], [0, 2], [[1], [2]], final=[True, False])
    assert value(strategy.loss(student(with_extra), with_extra)) == pytest.approx(4.0, rel=1e-5)
    assert value(strategy.loss(student(only), only)) == pytest.approx(4.0, rel=1e-5)
    copy = FixedModel([[1.0, 0.0], [0.5, 0.5]], TD_ITEMS_TEACHER + [[1.0, -2.0]])
    batch = pairs([0, 1], [0, 2], [[1], [0]])
    assert value(strategy.loss(copy(batch), batch)) == pytest.approx(0.0, abs=1e-6)
    sequences = rows([0, 1])  # items from the teacher's top-2 lists instead
    assert value(strategy.loss(copy(sequences), sequences)) == pytest.approx(0.0, abs=1e-6)


def test_htd_topology_within_groups_and_between_prototypes_and_entities() -> None:
    # One group per side: {u0} and {i0, i1}. Entity level: same-group pairs i0-i1 twice, 2 * 1/2 = 1.
    # Group level: cosines of prototypes P_u = u0, P_i = mean(i0, i1) with every entity.
    teacher = knowledge([[0, 1]], 3, TD_USER, TD_ITEMS_TEACHER + [[1.0, 0.0]])
    strategy = setup(HTD(HTDParams(n_groups=1, alpha=1.0, topk=2)), teacher, 2)
    student = FixedModel(TD_USER, TD_ITEMS_STUDENT + [[1.0, 0.0]])
    batch = pairs([0], [0], [[1]])
    teacher_entities = TD_USER + TD_ITEMS_TEACHER
    student_entities = TD_USER + TD_ITEMS_STUDENT
    teacher_prototypes = [TD_USER[0], [0.5, 1.0]]
    student_prototypes = [TD_USER[0], [0.5, 0.5]]
    group_level = sum((cosine(ps, s) - cosine(pt, t)) ** 2
                      for ps, pt in zip(student_prototypes, teacher_prototypes)
                      for s, t in zip(student_entities, teacher_entities))
    assert value(strategy.loss(student(batch), batch)) == pytest.approx(1.0 + group_level, rel=1e-5)

    strategy = setup(HTD(HTDParams(n_groups=1, alpha=1.0, group_topology="prototype", topk=2)), teacher, 2)
    prototype_level = 2 * (cosine(*student_prototypes) - cosine(*teacher_prototypes)) ** 2
    assert value(strategy.loss(student(batch), batch)) == pytest.approx(1.0 + prototype_level, rel=1e-5)


def test_htd_group_assignment_term_and_zero_topology_for_a_copy_of_the_teacher() -> None:
    teacher = knowledge([[0, 1]], 3, TD_USER, TD_ITEMS_TEACHER + [[1.0, 0.0]])
    batch = pairs([0], [0], [[1]])
    strategy = setup(HTD(HTDParams(n_groups=1, alpha=0.0, topk=2)), teacher, 2)
    zero_experts(strategy.user_groups)
    zero_experts(strategy.item_groups)
    student = FixedModel(TD_USER, TD_ITEMS_STUDENT + [[1.0, 0.0]])
    norms = squared_norm(TD_USER[0]) + sum(squared_norm(v) for v in TD_ITEMS_TEACHER)  # all over 1 final row
    assert value(strategy.loss(student(batch), batch)) == pytest.approx(norms, rel=1e-5)
    strategy = setup(HTD(HTDParams(n_groups=3, alpha=1.0, topk=2)), teacher, 2)
    copy = FixedModel(TD_USER, TD_ITEMS_TEACHER + [[1.0, 0.0]])
    assert value(strategy.loss(copy(batch), batch)) == pytest.approx(0.0, abs=1e-6)


def _value_and_grad(loss_of, student: torch.Tensor) -> tuple[float, torch.Tensor]:
    student = student.clone().requires_grad_(True)
    loss = loss_of(student)
    loss.backward()
    return float(loss.detach()), student.grad


@pytest.mark.parametrize("n", [12, 600])  # below Ds + Dt: (n, n) similarities; above: Gram matrices
def test_topology_error_equals_the_squared_error_of_the_cosine_matrices(n: int) -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(n, 8), torch.randn(n, 300)
    direct = lambda s: (cosine_matrix(s, s) - cosine_matrix(teacher, teacher)).pow(2).sum()  # noqa: E731
    expected, expected_grad = _value_and_grad(direct, student)
    found, grad = _value_and_grad(lambda s: topology_error(s, teacher), student)
    assert found == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-4)


def test_htd_entity_level_is_the_same_group_pairs_of_the_cosine_matrices() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(500, 8), torch.randn(500, 300)
    groups = torch.cat([torch.zeros(400, dtype=torch.long), torch.randint(1, 7, (100,))])  # one large group
    strategy = HTD(HTDParams(group_topology="prototype"))
    same = (groups[:, None] == groups[None, :]).float()

    def direct(s: torch.Tensor) -> torch.Tensor:
        membership = torch.nn.functional.one_hot(groups).float()
        present = membership[:, membership.sum(0) > 0]
        averaging = present.T / present.sum(0)[:, None]
        prototypes_s, prototypes_t = averaging @ s.detach(), averaging @ teacher
        entity = ((cosine_matrix(s, s) - cosine_matrix(teacher, teacher)).pow(2) * same).sum()
        return entity + (cosine_matrix(prototypes_s, prototypes_s)
                         - cosine_matrix(prototypes_t, prototypes_t)).pow(2).sum()

    expected, expected_grad = _value_and_grad(direct, student)
    found, grad = _value_and_grad(lambda s: strategy.topology(s, teacher, groups), student)
    assert found == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 1e-2, 1e-6])  # dense weights, mostly zero, one-hot
def test_the_sparse_mixture_gives_the_dense_mixture_and_its_gradients(temperature: float) -> None:
    torch.manual_seed(0)
    mixture = ExpertMixture(6, 20, n_experts=8)
    student, teacher = torch.randn(300, 6), torch.randn(300, 20)

    def run(dense: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        mixture.zero_grad()
        torch.manual_seed(1)
        weights = mixture.select(teacher, temperature)
        rows, experts = torch.nonzero(weights, as_tuple=True)
        if dense:
            out = (mixture.each_expert(student) * weights.T[:, :, None]).sum(0)
        else:
            out = mixture._sparse_mixture(student, weights, rows, experts)
        out.pow(2).sum().backward()
        return out.detach(), [p.grad.clone() for p in mixture.parameters()]

    dense_out, dense_grads = run(dense=True)
    sparse_out, sparse_grads = run(dense=False)
    torch.testing.assert_close(sparse_out, dense_out, rtol=1e-5, atol=1e-4)
    for sparse_grad, dense_grad in zip(sparse_grads, dense_grads):
        torch.testing.assert_close(sparse_grad, dense_grad, rtol=1e-4, atol=1e-3)


def test_htd_rejects_an_unknown_group_topology() -> None:
    with pytest.raises(ConfigError, match="group_topology.*'entity', 'prototype'"):
        HTD(HTDParams(group_topology="pairs"))


# --- ScoreKD ------------------------------------------------------------------------------------------


def test_score_kd_is_tempered_kl_over_all_items() -> None:
    # Teacher scores of user 0 over 3 items: [2, 1, 0]; student scores all 0 (uniform).
    # T = 2: T^2 * sum_i p_i log(p_i / (1/3)), p = softmax([1, 0.5, 0]).
    teacher = knowledge([[0, 1]], 3, [[1.0, 0.0]], [[2.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    strategy = setup(ScoreKD(ScoreKDParams(temperature=2.0)), teacher, 1)
    student = FixedModel([[0.0]], [[1.0], [2.0], [3.0]])
    batch = rows([0, 0], final=[True, False])
    logits = [1.0, 0.5, 0.0]
    probs = [math.exp(x) / sum(math.exp(y) for y in logits) for x in logits]
    expected = 4 * sum(p * math.log(p * 3) for p in probs)
    assert value(strategy.loss(student(batch), batch)) == pytest.approx(expected, rel=1e-5)


def test_score_kd_is_zero_for_a_copy_of_the_teacher_on_every_candidate_set() -> None:
    teacher = random_knowledge(n_users=4, n_items=50, topk=10, dim=3)
    copy = FixedModel(teacher["user_repr"].tolist(), teacher["item_repr"].tolist())
    batch = rows([0, 1, 2])
    for candidates in ("all", "topk_sampled"):
        strategy = setup(ScoreKD(ScoreKDParams(candidates=candidates, topk=10, n_samples=5)), teacher, 3)
        assert value(strategy.loss(copy(batch), batch)) == pytest.approx(0.0, abs=1e-5)
    assert strategy.candidate_items(torch.tensor([0, 1]), torch.device("cpu")).shape == (2, 15)
    with pytest.raises(ConfigError, match="candidates"):
        ScoreKD(ScoreKDParams(candidates="some"))
