"""The task contract and the task registry.

A task is everything that differs between kinds of recommendation (explicit ratings, top-K
ranking, ...): how the split becomes model inputs, which models apply, how a model is trained and
validated, what knowledge a teacher hands over, how a role is evaluated, its baselines and the
protocol written next to its numbers. The run (`recdistill.run.spine`) calls only this contract, so
a new task is one module here plus its configs. Tasks are found by name: every module of this
package that defines a `Task` subclass with a `name` is registered.
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

import recdistill.tasks as tasks_package
from recdistill.data.split_config import to_split_config
from recdistill.data.splits import Split
from recdistill.data.tables import RecData
from recdistill.data.text_embeddings import item_text_embeddings
from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.objective import DistillationObjective, build_objective
from recdistill.errors import ConfigError
from recdistill.evaluation.config import to_evaluator_config
from recdistill.evaluation.result import RoleResult
from recdistill.models.registry import build_model, get_model_class, model_classes
from recdistill.transfer.protocols import TransferContext


@dataclass
class TaskData:
    """What every task prepares: the dataset, its split and the split's cache key. Tasks extend it
    with their model inputs and the `shape` their models are built for."""

    data: RecData
    split: Split
    split_key: str


class Task(abc.ABC):
    """One kind of recommendation. Built once per run from the composed config and the device."""

    name: ClassVar[str]
    model_base: ClassVar[type[nn.Module]]  # models of this task subclass it
    transfer_modes: ClassVar[tuple[str, ...]] = ("none",)  # `transfer.mode` values that apply
    baseline_names: ClassVar[tuple[str, ...]] = ()  # reference roles `baselines=[...]` may name
    refits: ClassVar[bool] = False  # implements `refit_data` (trainer.refit_on_valid)

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.cache_dir = Path(str(cfg.cache_dir)).expanduser()
        self.split = to_split_config(cfg.split)  # typed: the stages never read the split node itself
        self.evaluator = to_evaluator_config(cfg.evaluator)
        if self.evaluator.name != self.name:
            raise ConfigError(f"evaluator={self.evaluator.name} evaluates the {self.evaluator.name} task, but "
                              f"task={self.name}; choose evaluator={self.name}")
        if cfg.transfer.mode not in self.transfer_modes:
            raise ConfigError(f"transfer.mode={cfg.transfer.mode!r} does not apply to the {self.name} task; "
                              f"valid: {', '.join(self.transfer_modes)}")
        unknown = [name for name in cfg.baselines if name not in self.baseline_names]
        if unknown:
            raise ConfigError(f"baseline {unknown[0]!r} unknown for the {self.name} task; "
                              f"valid: {list(self.baseline_names)}")

    @abc.abstractmethod
    def prepare(self, run_dir: Path) -> TaskData:
        """Load the data, make (or reuse) the split, and build the model inputs under the protocol."""

    def new_model(self, model_cfg: Any, data: TaskData, seed: int) -> nn.Module:
        """A freshly initialised model (seeded), with the side information it declares wired in."""
        name = str(model_cfg["name"])
        if not issubclass(get_model_class(name), self.model_base):  # before building it for another task's data
            raise ConfigError(f"model {name!r} does not apply to the {self.name} task; "
                              f"valid: {', '.join(self.model_names())}")
        torch.manual_seed(seed)
        model = build_model(model_cfg, data.shape)
        wire_side_inputs(model, data.data, self.cache_dir)
        self.after_load(model, data)
        return model

    @classmethod
    def model_names(cls) -> list[str]:
        """Names of the registered models of this task, sorted."""
        return sorted(name for name, model_class in model_classes().items() if issubclass(model_class, cls.model_base))

    def after_load(self, model: nn.Module, data: TaskData) -> None:
        """Restore what a checkpoint does not hold (ranking: counts and graphs from the training split)."""

    def hidden_dim(self, model_cfg: Any, data: TaskData) -> int:
        """Width of the hidden state of `model_cfg`'s model (what feature-level strategies project to)."""
        return build_model(model_cfg, data.shape).hidden_dim

    @abc.abstractmethod
    def fit(self, model: nn.Module, objective: DistillationObjective, role: str, data: TaskData,
            checkpoint_dir: Path, seed: int, stop_after: int | None = None) -> dict:
        """Train `model` on `objective` with `role`'s loop, selecting the best validation epoch;
        returns `{"training": summary}`. With `stop_after` (a refit, on `refit_data`): nothing is
        validated and the model after that many epochs is kept."""

    def refit_data(self, data: TaskData) -> TaskData:
        """`data` whose training part also holds the validation split (`trainer.refit_on_valid`, which
        the config check allows only for tasks with `refits`); evaluation inputs unchanged."""
        raise NotImplementedError(f"task {self.name} has no refit_data; its class sets refits = False")

    def fit_teacher(self, ctx: TransferContext, key: str) -> tuple[nn.Module, dict]:
        """Train the teacher (cache entry `key`); tasks with transfer modes that replace training
        override this."""
        model = self.new_model(self.cfg.teacher, ctx.data, self.cfg.teacher_seed)
        return model, self.fit(model, no_distillation(self.name), "teacher", ctx.data,
                               ctx.run_dir / "checkpoints" / f"teacher_{key}", self.cfg.teacher_seed)

    def after_teacher(self, teacher: nn.Module, info: dict, data: TaskData) -> dict:
        """Adjust the trained (or cached) teacher in place; returns its info (zero-shot writes here)."""
        return info

    @abc.abstractmethod
    def extract(self, teacher: nn.Module, teacher_key: str, needs: frozenset[str], data: TaskData, path: Path
                ) -> TeacherKnowledge:
        """Stage 2: the teacher's knowledge of kinds `needs`, saved at (or reused from) `path`."""

    @abc.abstractmethod
    def evaluate(self, role: str, model: nn.Module, data: TaskData) -> RoleResult:
        """Valid/test metrics, per-user test metrics, efficiency (and task extras) of one role."""

    @abc.abstractmethod
    def baselines(self, data: TaskData) -> dict[str, tuple[nn.Module, dict]]:
        """The configured reference models (`baselines=[...]`), fitted, with their info."""

    @abc.abstractmethod
    def protocol(self) -> dict[str, Any]:
        """The evaluation protocol, written next to every number."""

    def check_plan(self, objective: DistillationObjective, data: TaskData) -> None:
        """ConfigError for a setting that the prepared data rules out, raised before any training
        (a run should not pretrain a teacher for hours and then stop on its config); nothing by default."""

    def model_selection(self) -> str:
        """How each loop picks the epoch whose model is evaluated, as the protocol block states it."""
        def selection(loop: Any) -> str:
            if loop.select == "last":
                return f"last of {loop.epochs} epochs (no selection)"
            return f"best validation {loop.monitor} (patience {loop.patience})"
        teacher, student = selection(self.cfg.trainer.teacher), selection(self.cfg.trainer.student)
        chosen = teacher if teacher == student else f"teacher: {teacher}; students: {student}"
        refit = ("; then every model trained again on train + valid for its selected number of epochs, and "
                 "tested (trainer.refit_on_valid)") if self.cfg.trainer.get("refit_on_valid") else ""
        return f"{chosen}; test never used for selection{refit}"

    def data_protocol(self) -> dict[str, Any]:
        """What was done to the data before the split (written into the protocol block): repeated
        pairs, the positive-rating threshold and the k-core filter (data_report.json: what they dropped)."""
        dataset = self.cfg.dataset
        return {"dataset": dataset.name, "duplicates": dataset.duplicates,
                "positive_threshold": dataset.get("positive_threshold"),
                "k_core": {"min_user_interactions": dataset.min_user_interactions,
                           "min_item_interactions": dataset.get("min_item_interactions", 0)},
                "rating_scale": dataset.get("rating_scale") or "the reader's, else inferred (data_report.json)"}


def no_distillation(task: str) -> DistillationObjective:
    """The objective of a model trained on ground truth alone."""
    return build_objective(OmegaConf.create({"name": "none", "base_weight": 1.0, "terms": {}}), task=task)


def wire_side_inputs(model: nn.Module, data: RecData, cache_dir: Path) -> None:
    """Hand `model` every kind of side information it declares; ConfigError when a required kind is
    missing from the dataset."""
    tables = {"item_text": data.items, "user_table": data.users, "item_table": data.items}
    for kind, required in model.side_inputs().items():
        table = tables[kind]
        if table is None:
            if required:
                hint = "; set teacher.text_dim=0 (or student.text_dim=0) for data without text" if kind == "item_text" else ""
                raise ConfigError(f"model {model.config.name!r} reads {kind.replace('_', ' ')} but dataset "
                                  f"{data.name!r} has no {'item' if 'item' in kind else 'user'} table{hint}")
            continue
        model.set_side_input(kind, item_text_embeddings(table, cache_dir) if kind == "item_text" else table)


@cache
def task_classes() -> dict[str, type[Task]]:
    """Task name -> class, for every Task subclass defined in a module of `recdistill.tasks`."""
    found: dict[str, type[Task]] = {}
    for info in pkgutil.iter_modules(tasks_package.__path__):
        module = importlib.import_module(f"{tasks_package.__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Task) and value is not Task and hasattr(value, "name"):
                found[value.name] = value
    return found


def get_task(cfg: DictConfig, device: torch.device) -> Task:
    """The task named by `cfg.task`, built for this run; ConfigError listing the valid names."""
    classes = task_classes()
    if cfg.task not in classes:
        raise ConfigError(f"task {cfg.task!r} unknown; valid: {sorted(classes)}")
    return classes[cfg.task](cfg, device)
