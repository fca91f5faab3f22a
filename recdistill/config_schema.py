"""The root config schema, registered in Hydra's ConfigStore so mistakes fail at composition.

Each group (distill, trainer, transfer) is typed by its component's dataclass;
teacher and student are typed per model: every model's Config is stored as `model_schema/<name>`
and each model YAML starts from it (`defaults: [/model_schema/<name>@_here_, _self_]`); the dataset
likewise per reader: `dataset_schema/<name>` (`defaults: [/dataset_schema/<name>@_here_, _self_]`);
the split per kind: `split_schema/<kind>`; the evaluator per task: `evaluator_schema/<name>`;
the logger (experiment tracking) by `LoggerConfig`, defined here because its tracker lives in `run`.
Stages read the split and evaluator as dataclasses: `to_split_config`, `to_evaluator_config`.
`check_run_config(cfg)` checks a composed run before anything runs: the value domains the schemas
declare (`recdistill.utils.config_checks`), choices, distillation terms and the device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from importlib.util import find_spec
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recdistill.data.readers.registry import dataset_config, dataset_readers
from recdistill.data.split_config import SPLIT_SCHEMAS, to_split_config
from recdistill.distill.config import DistillConfig
from recdistill.distill.objective import check_distill_config
from recdistill.errors import ConfigError, DependencyError
from recdistill.evaluation.metrics import higher_is_better
from recdistill.evaluation.config import EVALUATOR_SCHEMAS, check_evaluator_config, to_evaluator_config
from recdistill.models.registry import get_model_class, model_classes
from recdistill.tasks.base import task_classes
from recdistill.training.config import TrainerConfig
from recdistill.transfer.config import TransferConfig, check_transfer_config
from recdistill.utils.config_checks import bounded, find_violations, raise_violations
from recdistill.utils.runinfo import resolve_device


#: The trackers of the `logger` group, each with the package it needs (installed by the `track` extra).
TRACKERS = {"none": None, "tensorboard": "tensorboard", "mlflow": "mlflow"}


@dataclass
class LoggerConfig:
    """Experiment tracking (`recdistill.run.tracking`): per-epoch losses and validation metrics per role,
    final metrics, the resolved config as parameters; results never depend on it."""

    name: str = bounded("none", choices=tuple(TRACKERS))  # none | tensorboard | mlflow
    tracking_uri: Optional[str] = None  # mlflow: null = a local file store, outputs/mlruns of the working directory
    experiment: Optional[str] = None  # mlflow: the experiment runs are grouped under; null = experiment_name


def check_logger_config(logger: LoggerConfig) -> None:
    """DependencyError when the chosen tracker's package is not installed (found without importing it)."""
    package = TRACKERS.get(logger.name)
    if package is not None and find_spec(package) is None:
        raise DependencyError(f"logger={logger.name} needs the {package} package: pip install 'recdistill[track]'")


@dataclass
class RunConfig:
    """One run: the data, the models, the strategy, the protocol and the budget."""

    experiment_name: str = "default"  # names the output folder
    task: str = "rating"  # rating
    seed: int = bounded(0, ge=0)  # the students' seed (and the data's, where data or split are random)
    teacher_seed: int = bounded(0, ge=0)  # fixed by default: a sweep over seeds trains one teacher, varies the students
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N | mps (checked by resolve_device)
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
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # none | tensorboard | mlflow: experiment tracking


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


def check_run_config(cfg: DictConfig | RunConfig) -> RunConfig:
    """The typed config of a composed run, checked before anything runs; ConfigError otherwise.

    Every value outside the domain its schema declares is one line `<key>=<value> must be <range>`
    of a single message; then the task, the split kind, the evaluator's and transfer's choices, the
    distillation terms (keys, types, domains), the device (known, and present on this machine) and the
    logger's package."""
    run = cfg if isinstance(cfg, RunConfig) else _typed(cfg)
    if not isinstance(cfg, RunConfig):
        _check_known_keys(OmegaConf.to_container(cfg, resolve=True), run)
    raise_violations(find_violations(run))
    if run.task not in task_classes():
        raise ConfigError(f"task={run.task!r} must be one of {', '.join(sorted(task_classes()))}")
    _check_models_and_monitors(run)
    _check_refit(run)
    to_split_config(run.split)
    check_evaluator_config(run.evaluator)
    check_transfer_config(run.transfer)
    check_distill_config(run.distill, task=run.task)
    resolve_device(run.device)
    check_logger_config(run.logger)
    return run


def _check_refit(run: RunConfig) -> None:
    """trainer.refit_on_valid needs a task that can refit and a teacher trained on this split alone."""
    if not run.trainer.refit_on_valid:
        return
    refitting = sorted(name for name, task in task_classes().items() if task.refits)
    if run.task not in refitting:
        raise ConfigError(f"trainer.refit_on_valid=true is implemented for task={', '.join(refitting)} only, "
                          f"not task={run.task}")
    if run.transfer.mode != "none":
        raise ConfigError(f"trainer.refit_on_valid=true needs transfer.mode=none, got {run.transfer.mode!r}")


def _check_known_keys(raw: Any, typed: Any, prefix: str = "") -> None:
    """ConfigError naming a key of the composed config that its schema does not have (e.g. added
    with Hydra's `+key=value`, which bypasses the schema), with the valid keys."""
    if not (is_dataclass(typed) and isinstance(raw, Mapping)):
        return
    names = [f.name for f in fields(typed)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]} is not a key of {prefix.rstrip('.') or 'the config'}; valid: "
                          f"{', '.join(names)}")
    for name in names:
        if name != "terms":  # distill.terms: checked per strategy by check_distill_config
            _check_known_keys(raw.get(name), getattr(typed, name), f"{prefix}{name}.")


def _check_models_and_monitors(run: RunConfig) -> None:
    """The teacher and student are models of the run's task; each loop monitors a metric of it."""
    task = task_classes()[run.task]
    for role in ("teacher", "student") if run.students else ("teacher",):
        name = getattr(run, role).name
        if not issubclass(get_model_class(name), task.model_base):
            raise ConfigError(f"{role}.name={name!r} is not a model of the {run.task} task; "
                              f"valid: {', '.join(task.model_names())}")
    for role in ("teacher", "student"):
        higher_is_better(getattr(run.trainer, role).monitor, task=run.task, source=f"trainer.{role}.monitor")


def _typed(cfg: DictConfig) -> RunConfig:
    """The RunConfig of a composed node; groups composed without their schema are typed by name."""
    try:
        if OmegaConf.get_type(cfg) is not RunConfig:
            cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
        run = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config: {exc}") from exc
    if isinstance(run.dataset, Mapping):
        run.dataset = dataset_config(run.dataset)
    if isinstance(run.split, Mapping):
        run.split = to_split_config(run.split)
    if isinstance(run.evaluator, Mapping):
        run.evaluator = to_evaluator_config(run.evaluator)
    for role in ("teacher", "student"):
        raw = getattr(run, role)
        if isinstance(raw, Mapping):
            schema = get_model_class(str(raw.get("name"))).Config
            try:
                setattr(run, role, OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw)))
            except OmegaConfBaseException as exc:
                raise ConfigError(f"{role}: {exc}") from exc
    return run
