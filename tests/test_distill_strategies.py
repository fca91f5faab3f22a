"""Distillation strategies on tiny hand-computed examples, and the strategy registry."""

from __future__ import annotations

import math

import pytest
import torch

from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.registry import available_strategies, get_strategy_class
from recdistill.distill.strategies.feature import Feature, FeatureParams
from recdistill.distill.strategies.hard import Hard
from recdistill.distill.strategies.kl import KL, KLParams
from recdistill.distill.strategies.soft import Soft, SoftParams
from recdistill.distill.strategy import Strategy
from recdistill.errors import ConfigError
from recdistill.models.base import RatingOutput

LN3 = math.log(3.0)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


def output(logits: list[list[float]], hidden: list[list[float]] | None = None) -> RatingOutput:
    logits_t = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
    hidden_rows = hidden if hidden is not None else [[0.0]] * len(logits)
    hidden_t = torch.tensor(hidden_rows, dtype=torch.float32, requires_grad=True)
    return RatingOutput(logits=logits_t, rating=torch.zeros(len(logits)), hidden=hidden_t)


def knowledge(**tensors: list[list[float]]) -> TeacherKnowledge:
    as_tensors = {kind: torch.tensor(rows, dtype=torch.float32) for kind, rows in tensors.items()}
    return TeacherKnowledge("teacher", as_tensors)


def batch(*index: int) -> dict[str, torch.Tensor]:
    return {"index": torch.tensor(index)}


def test_registry_discovers_every_strategy_module() -> None:
    assert set(available_strategies()) == {"hard", "soft", "kl", "feature",
                                           "rd", "cd", "de", "rrd", "ftd", "htd", "score_kd"}
    assert {n for n, c in available_strategies().items() if c.task == "rating"} == {"hard", "soft", "kl", "feature"}
    assert get_strategy_class("kl") is KL


def test_unknown_strategy_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"'nope'.*'cd', 'de', 'feature', 'ftd', 'hard', 'htd', 'kl', 'rd', 'rrd', 'score_kd', 'soft'"):
        get_strategy_class("nope")


def test_needs_are_declared_knowledge_kinds() -> None:
    rating = {name: cls for name, cls in available_strategies().items() if cls.task == "rating"}
    assert {name: cls.needs for name, cls in rating.items()} == {
        "hard": {"logits"}, "soft": {"logits"}, "kl": {"logits"}, "feature": {"hidden"},
    }


def test_teacher_rows_follow_batch_index() -> None:
    # Teacher rows 0..3 have argmax classes 0, 1, 2, 0; batch rows [2, 0] -> targets [2, 0].
    teacher = knowledge(logits=[[5, 0, 0], [0, 5, 0], [0, 0, 5], [5, 0, 0]])
    strategy = Hard()
    strategy.setup(teacher, student_hidden_dim=1)
    rows = strategy.teacher_rows("logits", batch(2, 0), torch.device("cpu"))
    assert torch.equal(rows.argmax(-1), torch.tensor([2, 0]))


def test_loss_before_setup_is_a_clear_error() -> None:
    with pytest.raises(AssertionError, match="setup"):
        Hard().loss(output([[0.0, 0.0]]), batch(0))


def test_hard_is_cross_entropy_on_teacher_argmax() -> None:
    # Targets: argmax [2,0,0] = 0, argmax [0,0,1] = 2.
    # Row 0: student logits all 0 -> p = 1/3 -> CE = ln 3.
    # Row 1: student [0, 0, ln 2] -> p(class 2) = 2 / (1 + 1 + 2) = 1/2 -> CE = ln 2.
    # Mean = (ln 3 + ln 2) / 2 = ln 6 / 2.
    strategy = Hard()
    strategy.setup(knowledge(logits=[[2, 0, 0], [0, 0, 1]]), student_hidden_dim=1)
    loss = strategy.loss(output([[0, 0, 0], [0, 0, math.log(2.0)]]), batch(0, 1))
    assert loss.item() == pytest.approx(math.log(6.0) / 2, abs=1e-6)


def test_soft_is_mse_of_probabilities_mean_over_all_elements() -> None:
    # Row 0: teacher [ln 3, 0] -> p = [3/4, 1/4]; student [0, 0] -> [1/2, 1/2]; squared errors 1/16, 1/16.
    # Row 1: teacher = student = [0, 0] -> squared errors 0, 0.
    # Mean over the 4 elements = (1/16 + 1/16) / 4 = 1/32 = 0.03125.
    strategy = Soft()
    strategy.setup(knowledge(logits=[[LN3, 0.0], [0.0, 0.0]]), student_hidden_dim=1)
    loss = strategy.loss(output([[0, 0], [0, 0]]), batch(0, 1))
    assert loss.item() == pytest.approx(1 / 32, abs=1e-6)


def test_soft_temperature_divides_logits() -> None:
    # Teacher [2 ln 3, 0] / T=2 -> [ln 3, 0] -> p = [3/4, 1/4]; student [0, 0] -> [1/2, 1/2].
    # Mean over 2 elements = (1/16 + 1/16) / 2 = 1/16.
    strategy = Soft(SoftParams(temperature=2.0))
    strategy.setup(knowledge(logits=[[2 * LN3, 0.0]]), student_hidden_dim=1)
    assert strategy.loss(output([[0, 0]]), batch(0)).item() == pytest.approx(1 / 16, abs=1e-6)


def test_kl_is_hinton_batchmean_times_t_squared() -> None:
    # Row 0 at T=2: teacher [2 ln 3, 0] / 2 -> p_t = [3/4, 1/4]; student [0, 0] -> p_s = [1/2, 1/2].
    #   KL(p_t || p_s) = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.304099 - 0.173287 = 0.130812.
    # Row 1: teacher = student -> 0.  batchmean = 0.130812 / 2 = 0.065406; times T^2 = 4 -> 0.261624.
    expected = 4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2
    strategy = KL(KLParams(temperature=2.0))
    strategy.setup(knowledge(logits=[[2 * LN3, 0.0], [1.0, 1.0]]), student_hidden_dim=1)
    loss = strategy.loss(output([[0, 0], [0, 0]]), batch(0, 1))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.261624, abs=1e-6)


def test_kl_default_temperature_is_two_and_zero_on_agreement() -> None:
    strategy = KL()
    assert strategy.params.temperature == 2.0
    strategy.setup(knowledge(logits=[[1.0, -2.0, 0.5]]), student_hidden_dim=1)
    assert strategy.loss(output([[1.0, -2.0, 0.5]]), batch(0)).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("cls", [Soft, KL])
def test_temperature_must_be_positive(cls: type[Strategy]) -> None:
    with pytest.raises(AssertionError, match="temperature"):
        cls(cls.Params(temperature=0.0))


def set_identity_projection(strategy: Feature) -> None:
    # Projection 3 -> 2 keeping the first two coordinates: W = [[1, 0, 0], [0, 1, 0]], b = 0.
    assert strategy.projection is not None
    with torch.no_grad():
        strategy.projection.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        strategy.projection.bias.zero_()


def test_feature_projection_is_created_in_setup_with_teacher_width() -> None:
    strategy = Feature()
    assert strategy.projection is None and len(list(strategy.parameters())) == 0
    strategy.setup(knowledge(hidden=[[1.0, 4.0]]), student_hidden_dim=3)
    assert strategy.projection is not None
    assert tuple(strategy.projection.weight.shape) == (2, 3)
    assert len(list(strategy.parameters())) == 2  # weight and bias


def test_feature_mse_without_normalisation() -> None:
    # Projected student [1, 2, 3] -> [1, 2]; teacher [1, 4]; squared errors 0, 4; mean = 2.
    strategy = Feature(FeatureParams(normalize=False))
    strategy.setup(knowledge(hidden=[[1.0, 4.0]]), student_hidden_dim=3)
    set_identity_projection(strategy)
    loss = strategy.loss(output([[0.0]], hidden=[[1.0, 2.0, 3.0]]), batch(0))
    assert loss.item() == pytest.approx(2.0, abs=1e-6)


def test_feature_mse_with_layer_norm() -> None:
    # Projected [1, 2]: mean 1.5, std 0.5 -> [-1, 1]. Teacher [4, 1]: mean 2.5, std 1.5 -> [1, -1].
    # Squared errors 4, 4; mean = 4 (slightly less because of layer_norm's eps = 1e-5).
    strategy = Feature()
    strategy.setup(knowledge(hidden=[[4.0, 1.0]]), student_hidden_dim=3)
    set_identity_projection(strategy)
    loss = strategy.loss(output([[0.0]], hidden=[[1.0, 2.0, 3.0]]), batch(0))
    assert loss.item() == pytest.approx(4.0, abs=1e-3)


def test_gradient_flows_to_feature_projection_and_student() -> None:
    strategy = Feature()
    strategy.setup(knowledge(hidden=torch.randn(4, 5).tolist()), student_hidden_dim=3)
    student = output([[0.0]] * 2, hidden=torch.randn(2, 3).tolist())
    strategy.loss(student, batch(3, 1)).backward()
    assert strategy.projection is not None
    assert strategy.projection.weight.grad is not None
    assert strategy.projection.weight.grad.abs().sum() > 0
    assert student.hidden.grad is not None and student.hidden.grad.abs().sum() > 0


def test_logit_strategies_pass_gradient_to_student_logits() -> None:
    for cls in (Hard, Soft, KL):
        strategy = cls()
        strategy.setup(knowledge(logits=[[3.0, 0.0, -1.0]]), student_hidden_dim=1)
        student = output([[0.0, 1.0, 0.0]])
        strategy.loss(student, batch(0)).backward()
        assert student.logits.grad is not None and student.logits.grad.abs().sum() > 0, cls.name
