"""The root config schema, registered in Hydra's ConfigStore so mistakes fail at composition.

Each group (dataset, split, distill, evaluator, trainer, transfer) is typed by its component's dataclass;
teacher and student are typed per model: every model's Config is stored as `model_schema/<name>`
and each model YAML starts from it (`defaults: [/model_schema/<name>@_here_, _self_]`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore

from recdistill.data.config import DatasetConfig, SplitConfig
from recdistill.distill.config import DistillConfig
from recdistill.evaluation.config import EvaluatorConfig
from recdistill.models.registry import model_classes
from recdistill.training.config import TrainerConfig
from recdistill.transfer.config import TransferConfig


@dataclass
class RunConfig:
    """One run: the data, the models, the strategy, the protocol and the budget."""

    experiment_name: str = "default"  # names the output folder
    task: str = "rating"  # rating
    seed: int = 0  # the students' seed (and the data's, where data or split are random)
    teacher_seed: int = 0  # fixed by default: a sweep over seeds trains one teacher, varies the students
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N
    cache_dir: str = "~/.cache/recdistill"  # downloads, splits, text embeddings, teacher checkpoints
    students: bool = True  # train the student roles; false: teacher (and baselines) only, e.g. transfer studies
    train_student_alone: bool = True  # also train the student without distillation as the baseline
    baselines: List[str] = field(default_factory=list)  # extra reference roles: global_mean, item_mean | popularity, random
    resume: Optional[str] = None  # a run folder to continue (set by `recdistill train resume=PATH`)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    teacher: Any = None
    student: Any = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)


def register_schemas() -> None:
    """Store the root schema and one schema per model in Hydra's ConfigStore."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for name, model_class in model_classes().items():
        store.store(group="model_schema", name=name, node=model_class.Config)
