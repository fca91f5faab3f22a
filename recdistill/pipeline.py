"""The four stages of a distillation run: pretrain teacher -> extract -> distill -> evaluate.

Each stage logs what it builds, builds it, runs it and returns its results; `run` reads top to
bottom as the whole experiment. Stages skip work whose result already exists (a cached teacher, a
finished student), so `resume=RUN_DIR` continues an interrupted run to the same final metrics.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from recdistill import runinfo
from recdistill.data.batching import RatingWindows, TrainingSequences, UserRows, build_split_data, build_user_rows
from recdistill.data.loading import load_dataset
from recdistill.data.splits import Split, load_split, make_split, save_split, split_key
from recdistill.data.tables import RecData
from recdistill.data.text_embeddings import item_text_embeddings
from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.objective import DistillationObjective, build_objective
from recdistill.errors import ConfigError
from recdistill.evaluation.predict import predict
from recdistill.models.base import DataShape, RatingModel
from recdistill.models.checkpoint import load_model, save_model
from recdistill.models.registry import build_model
from recdistill.reporting.results import evaluate_role, write_results
from recdistill.reporting.run_report import write_run_report
from recdistill.training.loop import train
from recdistill.utils.atomic import write_json

log = logging.getLogger(__name__)

TASKS = ("rating", "ranking")
#: Rating baselines (`baselines=[...]`) and the mean each predicts.
RATING_BASELINES = {"global_mean": "global", "item_mean": "item"}
#: Part of every model cache key; bump it when model code changes what a checkpoint means.
MODEL_CACHE_FORMAT = 3


@dataclass
class RunData:
    """Everything the stages share about the data: tables, split, tensors, sizes."""

    data: RecData
    split: Split
    split_key: str
    train: TrainingSequences  # causal chunks of the training split, for training and extraction
    windows: dict[str, RatingWindows]  # one exact-protocol window per target
    evaluation: dict[str, UserRows | RatingWindows]  # the same inputs, per user where the split allows
    shape: DataShape


def cache_root(cfg: DictConfig) -> Path:
    """The expanded cache folder."""
    return Path(str(cfg.cache_dir)).expanduser()


def load_or_make_split(cfg: DictConfig, run_dir: Path) -> tuple[RecData, Split, str]:
    """Load the dataset and make (or reuse from the cache) the split; record it in the run folder."""
    data = load_dataset(cfg.dataset, seed=cfg.seed)
    key = split_key(OmegaConf.to_container(cfg.dataset), OmegaConf.to_container(cfg.split), cfg.seed)
    split_dir = cache_root(cfg) / "splits" / key
    if (split_dir / "split.json").exists():  # written last by save_split: the entry is complete
        split = load_split(split_dir)
    else:
        split = make_split(data.interactions, cfg.split, cfg.seed, items=data.items)
        save_split(split, split_dir)
    write_json(run_dir / "split.json", {"key": key, "path": str(split_dir), **OmegaConf.to_container(cfg.split),
                                        "sizes": split.sizes()})
    log.info("data %s: %d users, %d items; split %s %s -> train %d, valid %d, test %d", data.name, data.n_users,
             data.n_items, cfg.split.name, key, len(split.train), len(split.valid), len(split.test))
    return data, split, key


def prepare_data(cfg: DictConfig, run_dir: Path) -> RunData:
    """Load the dataset, make (or reuse) the split, and build the model inputs under the protocol."""
    data, split, key = load_or_make_split(cfg, run_dir)
    frames = {"train": split.train, "valid": split.valid, "test": split.test}
    train, windows = build_split_data(frames, cfg.evaluator.history_length)
    shape = DataShape(n_users=data.n_users, n_items=data.n_items, n_classes=5,
                      history_length=cfg.evaluator.history_length,
                      rating_mean=float(split.train["rating"].mean()))
    evaluation = {name: build_user_rows(w) or w for name, w in windows.items()}
    return RunData(data, split, key, train, windows, evaluation, shape)


def new_model(model_cfg: DictConfig, run: RunData, cfg: DictConfig, seed: int) -> RatingModel:
    """A freshly initialised model (seeded), with item text embeddings when it reads text."""
    torch.manual_seed(seed)
    model = build_model(model_cfg, run.shape)
    if getattr(model.config, "text_dim", 0) > 0:
        if run.data.items is None:
            raise ConfigError(f"model {model_cfg.name!r} reads item text but dataset {run.data.name!r} "
                              "has no item table")
        model.set_text_embeddings(item_text_embeddings(run.data.items, cache_root(cfg)))
    if hasattr(model, "set_user_features") and run.data.users is not None:  # side information
        model.set_user_features(run.data.users)
    if hasattr(model, "set_item_features") and run.data.items is not None:
        model.set_item_features(run.data.items)
    return model


def model_key(cfg: DictConfig, run: RunData, role: str) -> str:
    """Hash of everything that determines `role`'s model (teacher or student) trained on ground truth."""
    parts = {name: OmegaConf.to_container(cfg[name], resolve=True) for name in ("dataset", "split")}
    for where in ("cache_dir", "source"):  # where the data came from does not change the model
        parts["dataset"].pop(where, None)
    parts.update(model=OmegaConf.to_container(cfg[role], resolve=True),
                 trainer=OmegaConf.to_container(cfg.trainer[role]), seed=role_seed(cfg, role), task=cfg.task,
                 history_length=cfg.evaluator.history_length, input_history=cfg.evaluator.input_history,
                 split_key=run.split_key, format=MODEL_CACHE_FORMAT)
    if role == "teacher" and cfg.transfer.mode != "none":  # only then: keys of earlier runs stay valid
        parts["transfer"] = OmegaConf.to_container(cfg.transfer, resolve=True)
    return runinfo.stable_hash(parts)


def role_seed(cfg: DictConfig, role: str) -> int:
    """The teacher has its own seed, so a sweep over student seeds shares one teacher."""
    return cfg.teacher_seed if role == "teacher" else cfg.seed


def train_alone(cfg: DictConfig, role: str, run: RunData, run_dir: Path, device: torch.device
                ) -> tuple[RatingModel, dict]:
    """Train `role`'s model on ground truth only (see `cached_model`)."""
    def fit() -> tuple[RatingModel, dict]:
        if role == "teacher" and cfg.transfer.mode != "none":
            from recdistill.transfer.teacher import transferred_teacher

            return transferred_teacher(cfg, run, run_dir, device, key, new_model)
        model = new_model(cfg[role], run, cfg, role_seed(cfg, role))
        result = train(model, build_objective(_no_distillation()), run.train, run.evaluation["valid"],
                       cfg.trainer[role], device, role_seed(cfg, role), run_dir / "checkpoints" / f"{role}_{key}",
                       role, cfg.trainer.eval_batch_size)
        model.load_state_dict(result.best_state)
        return model, {"training": result.summary()}

    key = model_key(cfg, run, role)
    return cached_model(cfg, role, key, fit, device)


def cached_model(cfg: DictConfig, role: str, key: str, fit: Callable[[], tuple[nn.Module, dict]],
                 device: torch.device, after_load: Callable[[nn.Module], None] | None = None
                 ) -> tuple[nn.Module, dict]:
    """`fit()` `role`'s model, or load it from the cache entry `key` (everything that determines it):
    the teacher in stage 1, and the student-alone baseline, which a sweep over strategies shares.
    A file lock per key makes concurrent jobs wait for the one training it."""
    cached = cache_root(cfg) / f"{role}s" / f"{key}.pt"
    cached.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cached.with_suffix(".lock"))):
        if cached.exists():
            log.info("%s %s found in cache %s", role, key, cached)
            try:
                model, extra = load_model(cached, device)
                if after_load is not None:
                    after_load(model)
                return model, {**extra, "key": key, "from_cache": True}
            except (RuntimeError, KeyError, EOFError) as error:  # written by incompatible code: retrain
                log.warning("cached %s %s is unusable (%s); training it again", role, cached, error)
        log.info("training %s %s (%s) on ground truth", role, key, cfg[role if role in cfg else "teacher"].name)
        model, extra = fit()
        save_model(cached, model, extra=extra)  # atomic: a partly written entry is never used
        return model, {**extra, "key": key, "from_cache": False}


def extract_knowledge(cfg: DictConfig, teacher: RatingModel, key: str, needs: frozenset[str], run: RunData,
                      run_dir: Path, device: torch.device) -> TeacherKnowledge:
    """Stage 2: the teacher's outputs on every training example, as much as the strategy needs."""
    path = run_dir / "knowledge" / "teacher_knowledge.pt"
    if path.exists():
        knowledge = TeacherKnowledge.load(path)
        if knowledge.teacher_key == key and needs <= set(knowledge.tensors):
            log.info("extract: reusing %s", path)
            return knowledge
    output = predict(teacher, run.train, cfg.trainer.eval_batch_size, device)
    tensors = {kind: getattr(output, kind) for kind in sorted(needs)}
    knowledge = TeacherKnowledge(teacher_key=key, tensors=tensors,
                                 meta={"rows": len(run.train), "split_key": run.split_key})
    knowledge.save(path)
    log.info("extract: %s for %d training examples -> %s", sorted(needs) or "nothing", len(run.train), path)
    return knowledge


def distill_student(cfg: DictConfig, role: str, objective: DistillationObjective, run: RunData, run_dir: Path,
                    device: torch.device) -> tuple[RatingModel, dict]:
    """Stage 3: train the student with `objective`, or load the finished checkpoint of this run."""
    final = run_dir / "checkpoints" / f"{role}.pt"
    if final.exists():
        log.info("distill: %s already finished, loading %s", role, final)
        return load_model(final, device)
    student = new_model(cfg.student, run, cfg, cfg.seed)
    log.info("distill: training %s", role)
    result = train(student, objective, run.train, run.evaluation["valid"], cfg.trainer.student, device,
                   cfg.seed, run_dir / "checkpoints" / role, role, cfg.trainer.eval_batch_size)
    student.load_state_dict(result.best_state)
    extra = {"training": result.summary(), "loss_formula": objective.formula()}  # names seen in training
    log.info("distill: %s trained with %s", role, extra["loss_formula"])
    save_model(final, student, extra=extra)
    return student, extra


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run the whole study for one config; returns the metrics dict also written to metrics.json."""
    if cfg.task not in TASKS:
        raise ConfigError(f"task {cfg.task!r} unknown; valid: {list(TASKS)}")
    if cfg.task == "ranking":
        from recdistill.ranking_pipeline import run_ranking

        return run_ranking(cfg, run_dir)
    started = time.time()
    claim_run_dir(cfg, run_dir)
    device = runinfo.resolve_device(cfg.device)
    log.info("run folder %s, device %s, seed %d", run_dir, device, cfg.seed)
    stage_seconds: dict[str, float] = {}

    clock = time.perf_counter()
    run = prepare_data(cfg, run_dir)
    objective = build_objective(cfg.distill, task="rating")
    stage_seconds["data"] = time.perf_counter() - clock

    clock = time.perf_counter()
    teacher, teacher_info = train_alone(cfg, "teacher", run, run_dir, device)  # stage 1: pretrain
    stage_seconds["pretrain"] = time.perf_counter() - clock

    clock = time.perf_counter()
    knowledge = extract_knowledge(cfg, teacher, teacher_info["key"], objective.needs, run, run_dir, device)
    torch.manual_seed(cfg.seed)  # learnable strategy parts start the same whether or not the teacher was cached
    objective.setup(knowledge, _student_hidden_dim(cfg, run))
    stage_seconds["extract"] = time.perf_counter() - clock

    clock = time.perf_counter()
    models: dict[str, tuple[RatingModel, dict]] = {"teacher": (teacher, teacher_info)}
    if cfg.students and cfg.train_student_alone:
        models["student"] = train_alone(cfg, "student", run, run_dir, device)
    if cfg.students:
        models["student_kd"] = distill_student(cfg, "student_kd", objective, run, run_dir, device)
    stage_seconds["distill"] = time.perf_counter() - clock

    models.update(rating_baselines(cfg, run))
    clock = time.perf_counter()
    results = {role: evaluate_role(role, model, info, run, cfg, device) for role, (model, info) in models.items()}
    stage_seconds["evaluate"] = time.perf_counter() - clock

    info = run_info(cfg, device, models, teacher_info, run.split_key, protocol(cfg), stage_seconds, started)
    metrics = write_results(run_dir, info, results)
    write_run_report(run_dir)
    return metrics


def rating_baselines(cfg: DictConfig, run: RunData) -> dict[str, tuple[nn.Module, dict]]:
    """The configured mean-rating baselines, fitted on every rating a model may learn from
    (training split plus the split's source data)."""
    known = pd.concat([run.split.train, *([run.split.extra["source"]] if "source" in run.split.extra else [])])
    baselines: dict[str, tuple[nn.Module, dict]] = {}
    for name in cfg.baselines:
        if name not in RATING_BASELINES:
            raise ConfigError(f"baseline {name!r} unknown for the rating task; valid: {list(RATING_BASELINES)}")
        model = build_model({"name": "mean_rating", "by": RATING_BASELINES[name]}, run.shape)
        model.fit_ratings(known)
        baselines[name] = (model, {"training": {"fitted_by": "counting", "ratings": len(known)}})
    return baselines


def run_info(cfg: DictConfig, device: torch.device, models: dict[str, tuple[nn.Module, dict]], teacher_info: dict,
             key: str, run_protocol: dict[str, Any], stage_seconds: dict[str, float], started: float
             ) -> dict[str, Any]:
    """The `run` block of metrics.json: what ran, under which protocol, with which code and config."""
    return {
        "experiment": cfg.experiment_name, "task": cfg.task, "seed": cfg.seed, "teacher_seed": cfg.teacher_seed,
        "device": str(device),
        "dataset": cfg.dataset.name, "teacher": cfg.teacher.name, "student": cfg.student.name,
        "distill": cfg.distill.name, "loss_formula": models.get("student_kd", (None, {}))[1].get("loss_formula"),
        "teacher_key": teacher_info["key"], "student_key": models.get("student", (None, {}))[1].get("key"),
        "teacher_from_cache": teacher_info["from_cache"], "split_key": key,
        "protocol": run_protocol, "stage_seconds": stage_seconds, "seconds": time.time() - started,
        "versions": runinfo.package_versions(), "git": runinfo.git_revision(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def claim_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """Mark `run_dir` with this config's key; refuse to continue a folder started with another config,
    whose checkpoints would otherwise be mixed into this run."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("resume", None)
    key = runinfo.stable_hash(resolved)
    marker = run_dir / "run_key.json"
    if marker.exists():
        previous = json.loads(marker.read_text())["key"]
        if previous != key:
            raise ConfigError(f"{run_dir} holds a run of a different config (key {previous}, this one {key}); "
                              "use a new folder, or resume it with `recdistill train resume={run_dir}`")
    else:
        write_json(marker, {"key": key})


def _no_distillation() -> DictConfig:
    return OmegaConf.create({"name": "none", "base_weight": 1.0, "terms": {}})


def _student_hidden_dim(cfg: DictConfig, run: RunData) -> int:
    return build_model(cfg.student, run.shape).hidden_dim


def protocol(cfg: DictConfig) -> dict[str, Any]:
    """The evaluation protocol, written next to every number."""
    return {
        "task": cfg.task,
        "split": OmegaConf.to_container(cfg.split, resolve=True),
        "input_history": cfg.evaluator.input_history,
        "visible_splits": {"train": "earlier train", "valid": "train", "test": "train + valid"},
        "history_length": cfg.evaluator.history_length,
        "accuracy": "argmax class == true rating",
        "mae_rmse": "on the expected rating (probability-weighted class values) or the model's point estimate",
        "model_selection": "best validation epoch by trainer monitor; test never used for selection",
    }
