"""Contract tests discovered from the registries: every registered model is built from its default
Config, trained one step, scored and round-tripped through a checkpoint; every registered strategy
computes a finite term whose gradient reaches the student, exactly as the training loop calls it.

Cases come from `model_classes()` and `available_strategies()`, so a new model or strategy file gets
these tests without editing this one.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import recdistill.distill.strategies as strategies_package
import recdistill.models as models_package
from recdistill.data.ranking_data import RankingData
from recdistill.distill.config import DistillConfig
from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.objective import DistillationObjective, build_objective
from recdistill.distill.registry import available_strategies
from recdistill.errors import ConfigError
from recdistill.models.base import RatingModel, RatingOutput
from recdistill.models.checkpoint import load_model, save_model
from recdistill.models.ranking_base import RankingModel, RankingOutput, RankingShape
from recdistill.models.registry import build_model, model_classes
from recdistill.models.side_inputs import SIDE_INPUT_KINDS
from recdistill.tasks.base import task_classes
from tests.helpers import small_data

#: Config overrides that switch on optional side inputs, tested besides each model's defaults.
SIDE_INPUT_VARIANTS = {"rating_transformer+text": ("rating_transformer", {"text_dim": 4})}
TEACHER_DIM = 6  # width of the fake teacher's hidden states and user/item vectors
LATE_EPOCH = 1000  # past every annealing schedule: temperatures at their final values
# More items than the default teacher_topk (100): strategies draw items from outside the top list.
RANKING_USERS, RANKING_ITEMS, PER_USER, MAX_LENGTH = 10, 120, 12, 8


def rating_model(cls: type) -> bool:
    """Whether `cls` is a rating model (else a ranking model)."""
    return issubclass(cls, RatingModel)


def fitted_by_counting(cls: type) -> bool:
    """Counting models take no gradient step (ranking: `input_kind == "none"`; rating: the
    `fitted_by_counting` flag, which RatingModel does not declare)."""
    return getattr(cls, "input_kind", None) == "none" or bool(getattr(cls, "fitted_by_counting", False))


MODEL_CASES = {name: (name, {}) for name in sorted(model_classes())} | SIDE_INPUT_VARIANTS
RANKING_CASES = [case for case, (name, _) in MODEL_CASES.items() if not rating_model(model_classes()[name])]


def students(task: str) -> list[str]:
    """Models of `task` trained by gradient steps: the students a strategy of that task may train
    (none for an unregistered task, which `test_strategy_task_is_a_registered_task` reports)."""
    base = task_classes()[task].model_base if task in task_classes() else None
    return [name for name, cls in sorted(model_classes().items())
            if base is not None and issubclass(cls, base) and not fitted_by_counting(cls)]


STRATEGY_CASES = [(strategy, student) for strategy, cls in sorted(available_strategies().items())
                  for student in students(cls.task)]


@pytest.fixture(autouse=True)
def _seeded_one_thread():
    """Fixed seed, one thread: fast for tiny models and no contention with parallel runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


# --- tiny data and fake side information -----------------------------------------------------------------


@cache
def rating_inputs():
    """(training sequences, windows per split, DataShape) of the small random rating split."""
    return small_data(history_length=4)


@cache
def ranking_inputs() -> tuple[RankingData, RankingShape]:
    """Distinct random items per user in time order: the last one is test, the one before valid."""
    rng = np.random.default_rng(0)
    items = np.concatenate([rng.choice(RANKING_ITEMS, PER_USER, replace=False) for _ in range(RANKING_USERS)])
    frame = pd.DataFrame({"user": np.repeat(np.arange(RANKING_USERS), PER_USER), "item": items,
                          "timestamp": np.tile(np.arange(PER_USER), RANKING_USERS), "row": np.arange(len(items))})
    from_end = PER_USER - 1 - frame["timestamp"]
    frames = {"train": frame[from_end >= 2], "valid": frame[from_end == 1], "test": frame[from_end == 0]}
    shape = RankingShape(n_users=RANKING_USERS, n_items=RANKING_ITEMS, max_length=MAX_LENGTH)
    return RankingData(frames, RANKING_USERS, RANKING_ITEMS, MAX_LENGTH), shape


def fake_side_input(kind: str, model: nn.Module, seed: int) -> Any:
    """A tiny table of `kind` shaped as the task would hand it to `model` (see side_inputs.py)."""
    rng = np.random.default_rng(seed)
    n_users, n_items = model.shape.n_users, model.shape.n_items
    if kind == "item_text":
        return torch.from_numpy(rng.normal(size=(n_items, model.config.text_dim))).float()
    if kind == "user_table":
        return pd.DataFrame({"age": pd.array(rng.choice([1, 20, 30, 60], n_users), dtype="Int64"),
                             "gender": rng.choice(["F", "M"], n_users),
                             "occupation": rng.choice(["artist", "doctor", "student"], n_users)})
    if kind == "item_table":
        return pd.DataFrame({"title": [f"item {i}" for i in range(n_items)],
                             "year": pd.array(rng.integers(1925, 2020, n_items), dtype="Int64"),
                             "genres": rng.choice(["Drama", "Comedy|Drama", "Action", ""], n_items)})
    raise AssertionError(f"no fake side input of kind {kind!r}; add one for the kinds {SIDE_INPUT_KINDS}")


def new_model(case: str, side_seed: int = 0) -> nn.Module:
    """The case's model on its tiny shape, side inputs wired, counting models fitted (as Task.new_model)."""
    name, overrides = MODEL_CASES[case]
    cls = model_classes()[name]
    torch.manual_seed(0)
    model = build_model({"name": name, **overrides}, rating_inputs()[2] if rating_model(cls) else ranking_inputs()[1])
    for kind in model.side_inputs():
        model.set_side_input(kind, fake_side_input(kind, model, side_seed))
    if not rating_model(cls):
        model.fit(ranking_inputs()[0].lists["train"])
    return model


def training_batch(model: nn.Module, epoch: int = 1) -> dict[str, torch.Tensor]:
    """The first batch the training loop would feed `model` in `epoch` (built as the task builds it)."""
    generator = torch.Generator().manual_seed(epoch)
    if isinstance(model, RatingModel):
        return next(iter(rating_inputs()[0].batches(64, "cpu", generator, epoch)))
    data = ranking_inputs()[0]
    batches = data.training_batches(model.input_kind, RANKING_USERS * MAX_LENGTH,
                                    n_negatives=model.pair_negatives())
    return next(iter(batches.batches(None, "cpu", generator, epoch)))


@torch.no_grad()
def scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """What evaluation reads, in eval mode: rating outputs of valid targets, or every item's score."""
    model.eval()
    if isinstance(model, RatingModel):
        return model(rating_inputs()[1]["valid"].batch(torch.arange(6)))._asdict()
    output = model(ranking_inputs()[0].user_batch(torch.arange(RANKING_USERS), "valid"))
    return {"state": output.state, "scores": model.score_items(output.state, torch.arange(RANKING_ITEMS))}


def student_gradients(loss: torch.Tensor, model: nn.Module) -> list[torch.Tensor]:
    """Gradients of `loss` for the model's trainable parameters (zeros where it does not reach)."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


# --- models ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", MODEL_CASES)
def test_model_trains_one_step_on_its_own_loss(case: str) -> None:
    model = new_model(case)
    if fitted_by_counting(type(model)):
        pytest.skip(f"{case} is fitted by counting, not by gradient steps")
    model.train()
    batch = training_batch(model)
    terms = model.loss(batch, model(batch))
    assert terms and all(t.dim() == 0 and torch.isfinite(t) for t in terms.values()), f"{case}: terms {terms}"
    total = sum(terms.values())
    grads = student_gradients(total, model)
    assert all(torch.isfinite(g).all() for g in grads), f"{case}: non-finite gradients"
    assert any(g.abs().sum() > 0 for g in grads), f"{case}: the loss reaches no parameter"
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), f"{case}: step changed nothing"
    assert all(torch.isfinite(v).all() for v in scores(model).values()), f"{case}: non-finite after one step"


@pytest.mark.parametrize("case", MODEL_CASES)
def test_model_scores_with_the_contract_shapes(case: str) -> None:
    model = new_model(case)
    out = scores(model)
    assert all(torch.isfinite(v).all() for v in out.values()), f"{case}: non-finite outputs"
    if isinstance(model, RatingModel):
        n_classes = model.shape.n_classes
        assert out["logits"].shape == (6, n_classes) and out["rating"].shape == (6,), case
        assert out["hidden"].shape == (6, model.hidden_dim), f"{case}: hidden {tuple(out['hidden'].shape)}"
        return
    assert out["scores"].shape == (RANKING_USERS, RANKING_ITEMS), f"{case}: scores {tuple(out['scores'].shape)}"
    assert out["state"].shape == (RANKING_USERS, model.hidden_dim), f"{case}: state {tuple(out['state'].shape)}"
    items = torch.tensor([3, 0, 7])
    with torch.no_grad():
        per_row = model.score_items(out["state"], items.expand(RANKING_USERS, -1))  # (B, n) item lists
        torch.testing.assert_close(per_row, out["scores"][:, items])
        if model.dot_product_scores:  # what strategies and extraction of user/item vectors rely on
            torch.testing.assert_close(out["scores"], out["state"] @ model.item_vectors(torch.arange(RANKING_ITEMS)).T)


@pytest.mark.parametrize("case", MODEL_CASES)
def test_checkpoint_round_trip_gives_identical_outputs(case: str, tmp_path) -> None:
    model = new_model(case)
    with torch.no_grad():  # saved weights differ from a fresh initialisation
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    expected = scores(model)
    save_model(tmp_path / "model.pt", model)
    loaded, _ = load_model(tmp_path / "model.pt")  # side inputs are not rewired: the checkpoint holds them
    assert type(loaded) is type(model) and loaded.config == model.config
    if isinstance(loaded, RankingModel):
        loaded.fit(ranking_inputs()[0].lists["train"])  # as the task's after_load
    for key, value in scores(loaded).items():
        assert torch.equal(value, expected[key]), f"{case}: {key} differs after save_model/load_model"


@pytest.mark.parametrize("case", MODEL_CASES)
def test_side_inputs_are_declared_and_read(case: str) -> None:
    model = new_model(case)
    declared = model.side_inputs()
    assert set(declared) <= set(SIDE_INPUT_KINDS), f"{case} declares unknown kinds {sorted(declared)}"
    for kind in sorted(set(SIDE_INPUT_KINDS) - set(declared)):  # an undeclared kind is refused by name
        value = torch.zeros(model.shape.n_items, 4) if kind == "item_text" else fake_side_input(kind, model, 0)
        with pytest.raises(ConfigError, match=kind):
            model.set_side_input(kind, value)
    before = scores(model)
    for kind in sorted(declared):
        changed = copy.deepcopy(model)
        changed.set_side_input(kind, fake_side_input(kind, model, seed=1))
        after = scores(changed)
        assert any(not torch.allclose(before[k], after[k]) for k in before), f"{case} ignores its {kind}"


@pytest.mark.parametrize("case", RANKING_CASES)
def test_item_embedding_table_holds_the_scored_item_vectors(case: str) -> None:
    model = new_model(case)
    found = model.item_embedding_table()
    if found is None:
        return  # no table: zero-shot cold start does not apply to this model
    table, offset = found
    assert isinstance(table, nn.Embedding) and table.num_embeddings >= RANKING_ITEMS + offset, case
    before = scores(model)["scores"]
    with torch.no_grad():
        table.weight[offset + 5] = torch.randn(table.embedding_dim) * 10
    after = scores(model)["scores"]
    assert not torch.allclose(after[:, 5], before[:, 5]), f"{case}: table row {offset + 5} is not item 5's vector"


# --- strategies -----------------------------------------------------------------------------------------


def fake_knowledge(task: str) -> TeacherKnowledge:
    """Every knowledge kind, shaped as extraction makes it for `task` (a random dot-product teacher)."""
    generator = torch.Generator().manual_seed(7)
    if task == "rating":
        n_rows = len(rating_inputs()[0])
        return TeacherKnowledge("fake", {"logits": torch.randn(n_rows, 5, generator=generator),
                                         "hidden": torch.randn(n_rows, TEACHER_DIM, generator=generator)},
                                {"rows": n_rows})
    data, _ = ranking_inputs()
    topk = DistillConfig().teacher_topk  # the run's default list length
    user_repr = torch.randn(RANKING_USERS, TEACHER_DIM, generator=generator)
    item_repr = torch.randn(RANKING_ITEMS, TEACHER_DIM, generator=generator)
    teacher = user_repr @ item_repr.T  # (U, I)
    row, item = data.history(torch.arange(RANKING_USERS), "train")
    teacher[row, item] = float("-inf")  # training items excluded, as extraction does
    top_scores, top_items = teacher.topk(topk, dim=1)  # (U, K)
    tensors = {"topk_items": top_items, "topk_scores": top_scores, "user_repr": user_repr, "item_repr": item_repr}
    return TeacherKnowledge("fake", tensors, {"n_users": RANKING_USERS, "n_items": RANKING_ITEMS, "topk": topk})


@pytest.mark.parametrize("name", sorted(available_strategies()))
def test_strategy_task_is_a_registered_task(name: str) -> None:
    cls = available_strategies()[name]
    assert cls.task in task_classes(), f"{name}.task={cls.task!r}; tasks: {sorted(task_classes())}"
    assert cls.needs, f"{name} needs no teacher knowledge"


@pytest.mark.parametrize("strategy, student", STRATEGY_CASES, ids=[f"{s}-{m}" for s, m in STRATEGY_CASES])
def test_strategy_term_is_finite_and_reaches_the_student(strategy: str, student: str) -> None:
    task = available_strategies()[strategy].task
    objective = build_objective(DistillConfig(name=strategy, terms={strategy: {"weight": 1.0}}), task=task)
    assert isinstance(objective, DistillationObjective) and objective.needs == available_strategies()[strategy].needs
    full = fake_knowledge(task)
    knowledge = TeacherKnowledge("fake", {k: full[k] for k in objective.needs}, full.meta)  # only what it declares
    model = new_model(student)
    torch.manual_seed(0)
    objective.setup(knowledge, model.hidden_dim)
    for epoch in (1, LATE_EPOCH):
        model.train()
        objective.on_epoch_start(epoch)
        batch = training_batch(model, epoch)
        output = model(batch)
        assert isinstance(output, RatingOutput if task == "rating" else RankingOutput)
        terms = objective(model.loss(batch, output), output, batch)
        assert torch.isfinite(terms[strategy]) and terms[strategy].dim() == 0, f"epoch {epoch}: {terms}"
        grads = student_gradients(terms[strategy], model)
        assert all(torch.isfinite(g).all() for g in grads), f"epoch {epoch}: non-finite student gradients"
        assert any(g.abs().sum() > 0 for g in grads), f"epoch {epoch}: {strategy} reaches no student parameter"
        model.zero_grad()
        objective.zero_grad()
        terms["loss"].backward()
        own = [p.grad for p in objective.parameters() if p.grad is not None]
        assert all(torch.isfinite(g).all() for g in own), f"epoch {epoch}: non-finite strategy gradients"


# --- the parametrization itself -------------------------------------------------------------------------


def test_cases_cover_every_registered_name() -> None:
    assert model_classes() and available_strategies() and task_classes(), "a registry found nothing"
    assert {name for name, _ in MODEL_CASES.values()} == set(model_classes())
    assert {s for s, _ in STRATEGY_CASES} == set(available_strategies()), "a strategy has no trainable student"
    for task, cls in task_classes().items():
        assert any(issubclass(m, cls.model_base) for m in model_classes().values()), f"no model for task {task}"
    for case, (name, overrides) in SIDE_INPUT_VARIANTS.items():
        assert new_model(case).side_inputs(), f"variant {case} {overrides} switches on no side input"


def defined_classes(package: Any, wanted: Callable[[type], bool]) -> dict[str, list[type]]:
    """Module name -> the classes it defines (not imports) that `wanted` accepts."""
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found[info.name] = [c for _, c in inspect.getmembers(module, inspect.isclass)
                            if c.__module__ == module.__name__ and wanted(c)]
    return found


def test_no_model_or_strategy_file_is_silently_skipped() -> None:
    def concrete_model(cls: type) -> bool:
        return issubclass(cls, (RatingModel, RankingModel)) and not inspect.isabstract(cls)

    registered_models = set(model_classes().values())
    for module, classes in defined_classes(models_package, concrete_model).items():
        missing = [c.__name__ for c in classes if c not in registered_models]
        assert not missing, f"models.{module} defines {missing}, which the model registry does not find"
    registered = set(available_strategies().values())
    for module, classes in defined_classes(strategies_package, lambda c: isinstance(c, type)).items():
        assert set(classes) & registered, f"distill/strategies/{module}.py registers no strategy"
