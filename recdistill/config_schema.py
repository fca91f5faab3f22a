"""The root config schema, registered in Hydra's ConfigStore so mistakes fail at composition.

Each group (distill, trainer, transfer) is typed by its component's dataclass;
teacher and student are typed per model: every model's Config is stored as `model_schema/<name>`
and each model YAML starts from it (`defaults: [/model_schema/<name>@_here_, _self_]`); the dataset
likewise per reader: `dataset_schema/<name>` (`defaults: [/dataset_schema/<name>@_here_, _self_]`);
the split per kind: `split_schema/<kind>`; the evaluator per task: `evaluator_schema/<name>`.
Stages read the split and evaluator as dataclasses: `to_split_config`, `to_evaluator_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore

from recdistill.data.readers.registry import dataset_readers
from recdistill.data.split_config import SPLIT_SCHEMAS
from recdistill.distill.config import DistillConfig
from recdistill.evaluation.config import EVALUATOR_SCHEMAS
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
    dataset: Any = None  # typed by its reader's Config (dataset_schema/<name>)
    split: Any = None  # typed by its kind's schema (split_schema/<kind>)
    teacher: Any = None
    student: Any = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    evaluator: Any = None  # typed by its task's schema (evaluator_schema/<name>)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)


def register_schemas() -> None:
    """Store the root schema and one schema per model, dataset reader, split kind and evaluator task."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for name, model_class in model_classes().items():
        store.store(group="model_schema", name=name, node=model_class.Config)
    for name, reader in dataset_readers().items():
        store.store(group="dataset_schema", name=name, node=reader.Config)
    for name, schema in SPLIT_SCHEMAS.items():
        store.store(group="split_schema", name=name, node=schema)
    for name, schema in EVALUATOR_SCHEMAS.items():
        store.store(group="evaluator_schema", name=name, node=schema)
