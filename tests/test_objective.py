"""DistillationObjective: weighted total, formula, setup/hooks, and building from config."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from recdistill.distill.config import DistillConfig
from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.objective import DistillationObjective, build_objective
from recdistill.distill.strategies.feature import Feature
from recdistill.distill.strategies.kl import KL
from recdistill.distill.strategies.soft import Soft, SoftParams
from recdistill.distill.strategy import Strategy
from recdistill.errors import ConfigError
from recdistill.models.base import RatingOutput

LN3 = math.log(3.0)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture
def knowledge() -> TeacherKnowledge:
    # Row 0: teacher logits [ln 3, 0] -> p = [3/4, 1/4]. Row 1: uniform. Hidden width 4.
    logits = torch.tensor([[LN3, 0.0], [0.0, 0.0]])
    return TeacherKnowledge("teacher", {"logits": logits, "hidden": torch.randn(2, 4)})


@pytest.fixture
def student() -> RatingOutput:
    logits = torch.zeros(2, 2, requires_grad=True)  # p = [1/2, 1/2] on both rows
    return RatingOutput(logits=logits, rating=torch.zeros(2), hidden=torch.randn(2, 3, requires_grad=True))


BATCH = {"index": torch.tensor([0, 1])}


class RecordingStrategy(Strategy):
    """Test double: a constant term that remembers the epochs it was told about."""

    name = ""  # unnamed, so it could never be registered

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_start(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def loss(self, student_output: RatingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tensor(7.0)


def test_total_is_weighted_sum_of_named_terms(knowledge: TeacherKnowledge, student: RatingOutput) -> None:
    # soft = 1/32 (see test_distill_strategies); base terms ce = 2, reg = 1.
    # loss = 0.5 * (2 + 1) + 0.25 * 1/32 + 2 * 7 = 1.5 + 0.0078125 + 14 = 15.5078125.
    objective = DistillationObjective(0.5, {"soft": (0.25, Soft()), "const": (2.0, RecordingStrategy())})
    objective.setup(knowledge, student_hidden_dim=3)
    base = {"ce": torch.tensor(2.0), "reg": torch.tensor(1.0)}
    terms = objective(base, student, BATCH)
    assert list(terms) == ["ce", "reg", "soft", "const", "loss"]
    assert terms["soft"].item() == pytest.approx(1 / 32, abs=1e-6)
    assert terms["loss"].item() == pytest.approx(15.5078125, abs=1e-6)
    assert objective.formula() == "loss = 0.5 * (ce + reg) + 0.25 * soft + 2.0 * const"


def test_formula_for_hybrid() -> None:
    objective = DistillationObjective(0.5, {"soft": (0.5, Soft())})
    assert objective.formula() == "loss = 0.5 * base + 0.5 * soft"
    assert objective.formula(["ce"]) == "loss = 0.5 * ce + 0.5 * soft"


def test_without_terms_objective_is_base_loss(student: RatingOutput) -> None:
    objective = build_objective(DistillConfig())
    assert objective.needs == frozenset() and list(objective.parameters()) == []
    objective.setup(None, student_hidden_dim=3)
    objective.on_epoch_start(0)
    ce = (student.logits.sum() + 3.0)  # = 3, with a graph back to the student
    terms = objective({"ce": ce}, student, BATCH)
    assert set(terms) == {"ce", "loss"} and terms["loss"].item() == pytest.approx(3.0)
    terms["loss"].backward()
    assert student.logits.grad is not None
    assert objective.formula(["ce"]) == "loss = 1.0 * ce"


def test_base_weight_zero_leaves_base_terms_reported_but_out_of_total(
    knowledge: TeacherKnowledge, student: RatingOutput
) -> None:
    objective = DistillationObjective(0.0, {"soft": (1.0, Soft())})
    objective.setup(knowledge, student_hidden_dim=3)
    terms = objective({"ce": torch.tensor(5.0)}, student, BATCH)
    assert terms["ce"].item() == 5.0
    assert terms["loss"].item() == pytest.approx(1 / 32, abs=1e-6)
    assert objective.formula() == "loss = 1.0 * soft"


def test_needs_is_union_and_setup_requires_knowledge() -> None:
    objective = DistillationObjective(1.0, {"kl": (1.0, KL()), "feature": (1.0, Feature())})
    assert objective.needs == frozenset({"logits", "hidden"})
    with pytest.raises(AssertionError, match="needs teacher knowledge"):
        objective.setup(None, student_hidden_dim=3)


def test_strategy_parameters_are_visible_after_setup(knowledge: TeacherKnowledge, student: RatingOutput) -> None:
    objective = DistillationObjective(1.0, {"feature": (1.0, Feature())})
    assert list(objective.parameters()) == []
    objective.setup(knowledge, student_hidden_dim=3)
    parameters = list(objective.parameters())
    assert [tuple(p.shape) for p in parameters] == [(4, 3), (4,)]
    objective({"ce": torch.tensor(0.0)}, student, BATCH)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in parameters)


def test_epoch_hook_reaches_every_strategy() -> None:
    first, second = RecordingStrategy(), RecordingStrategy()
    objective = DistillationObjective(1.0, {"a": (1.0, first), "b": (1.0, second)})
    objective.on_epoch_start(0)
    objective.on_epoch_start(1)
    assert first.epochs == [0, 1] and second.epochs == [0, 1]


def test_base_term_name_clash_is_rejected(knowledge: TeacherKnowledge, student: RatingOutput) -> None:
    objective = DistillationObjective(1.0, {"soft": (1.0, Soft())})
    objective.setup(knowledge, student_hidden_dim=3)
    with pytest.raises(AssertionError, match="soft"):
        objective({"soft": torch.tensor(1.0)}, student, BATCH)


def test_build_objective_from_hydra_structured_config() -> None:
    schema = OmegaConf.structured(DistillConfig)
    override = {"name": "hybrid", "base_weight": 0.5,
                "terms": {"soft": {"weight": 0.5, "temperature": 2}, "kl": {"weight": 0}}}
    cfg = OmegaConf.merge(schema, OmegaConf.create(override))
    objective = build_objective(cfg)
    assert list(objective.strategies) == ["soft"]  # weight 0 -> not constructed
    soft = objective.strategies["soft"]
    assert isinstance(soft, Soft) and soft.params == SoftParams(temperature=2.0)
    assert isinstance(soft.params.temperature, float)
    assert objective.formula(["ce"]) == "loss = 0.5 * ce + 0.5 * soft"


def test_build_objective_from_plain_dataclass() -> None:
    cfg = DistillConfig(name="kd", terms={"kl": {"weight": 1.0}, "feature": {"weight": 0.1, "normalize": False}})
    objective = build_objective(cfg)
    assert list(objective.strategies) == ["kl", "feature"]
    assert objective.strategies["kl"].params.temperature == 2.0
    assert objective.strategies["feature"].params.normalize is False


@pytest.mark.parametrize(
    ("terms", "pattern"),
    [
        ({"bogus": {"weight": 1.0}}, r"'bogus'.*valid: \['cd', 'de', 'feature', 'ftd', 'hard', 'htd', 'kl', 'rd', 'rrd', 'score_kd', 'soft'\]"),
        ({"soft": {"weight": 1.0, "temprature": 2.0}}, r"\['temprature'\].*soft.*valid: \['weight', 'temperature'\]"),
        ({"soft": {"weight": 1.0, "temperature": "hot"}}, r"distill\.terms\.soft\.temperature must be float.*'hot'"),
        ({"feature": {"weight": 1.0, "normalize": 1}}, r"distill\.terms\.feature\.normalize must be bool"),
        ({"kl": {"temperature": 2.0}}, r"distill\.terms\.kl needs a 'weight'.*\['weight', 'temperature'\]"),
        ({"kl": {"weight": "high"}}, r"distill\.terms\.kl\.weight must be a number"),
        ({"kl": {"weight": -1.0}}, r"distill\.terms\.kl\.weight must be a number >= 0, got -1\.0"),
        ({"hard": {"weight": 1.0, "temperature": 2.0}}, r"\['temperature'\].*hard.*valid: \['weight'\]"),
        ({"kl": 0.5}, r"distill\.terms\.kl must be a mapping"),
    ],
)
def test_config_errors_name_the_bad_key(terms: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build_objective(DistillConfig(terms=terms))


def test_config_with_nothing_to_train_is_rejected() -> None:
    with pytest.raises(ConfigError, match="base_weight is 0"):
        build_objective(DistillConfig(name="empty", base_weight=0.0, terms={"soft": {"weight": 0.0}}))


@dataclass
class _Cfg:
    name: str = "x"
    base_weight: Any = "one"
    terms: Any = None


def test_bad_base_weight_is_named() -> None:
    with pytest.raises(ConfigError, match=r"distill\.base_weight must be a number >= 0, got 'one'"):
        build_objective(_Cfg())
