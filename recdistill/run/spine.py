"""The run: pretrain teacher -> extract teacher knowledge -> distill into student -> evaluate.

Written once for every task: everything that differs between tasks is asked of the `Task`
(`recdistill.tasks.base`). Each stage logs what it builds, builds it, and returns its results;
stages skip work whose result already exists (a cached teacher, saved knowledge, a finished
student), so `resume=RUN_DIR` continues an interrupted run to the same final metrics.

Under torchrun (`recdistill.training.distributed`) every rank runs the spine and trains each model
together; rank 0 alone writes the run folder and the caches (the others read what it wrote after its
barriers), evaluates, and its metrics are returned on every rank.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig
from torch import nn

from recdistill.config_schema import check_run_config
from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.objective import DistillationObjective, build_objective
from recdistill.models.checkpoint import load_model, save_model
from recdistill.reporting.run_report import write_run_report
from recdistill.run.cache import ModelCache, role_seed
from recdistill.run.record import add_training_summary, claim_run_dir, run_info, write_results
from recdistill.run.refit import merge_refit, refit_models
from recdistill.run.tracking import tracking
from recdistill.tasks.base import Task, TaskData, get_task, no_distillation
from recdistill.training import distributed
from recdistill.training.loop import observing_epochs
from recdistill.transfer.protocols import TransferContext
from recdistill.utils.runinfo import resolve_device

log = logging.getLogger(__name__)
Trained = tuple[nn.Module, dict]


@contextmanager
def timed(stage_seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall time of the block to `stage_seconds[stage]`."""
    clock = time.perf_counter()
    yield
    stage_seconds[stage] = time.perf_counter() - clock


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run the whole study for one config; returns the metrics dict also written to metrics.json."""
    started, seconds = time.time(), {}
    logger = check_run_config(cfg).logger  # every value in range, before anything is built
    device = resolve_device(cfg.device, distributed.local_rank())  # torchrun: the GPU of the local rank
    task = get_task(cfg, device)
    main = distributed.is_main()  # always, without torchrun; under torchrun rank 0 alone writes
    if main:
        claim_run_dir(cfg, run_dir)
    log.info("run folder %s, device %s, seed %d, task %s", run_dir, device, cfg.seed, task.name)
    # logger=tensorboard|mlflow: every training epoch, then the final metrics once the files are written
    tracked = logger if main else replace(logger, name="none")  # torchrun: rank 0 alone reports
    with tracking(tracked, cfg, run_dir) as tracker, observing_epochs(tracker.epoch):
        with timed(seconds, "data"):
            # torchrun: rank 0 makes the split cache; the others read it and write their run files elsewhere
            with distributed.main_first(), distributed.writable(run_dir) as data_dir:
                data = task.prepare(data_dir)
            # trainer.refit_on_valid: the training data of the refits (ConfigError now, for a task without)
            seen = task.refit_data(data) if cfg.trainer.refit_on_valid else None
            objective = build_objective(cfg.distill, task=task.name)
            task.check_plan(objective, data)
        cache = ModelCache(cfg, task.cache_dir, data.split_key, device, after_load=lambda m: task.after_load(m, data))
        ctx = TransferContext(cfg, data, cache, lambda model_cfg, seed: task.new_model(model_cfg, data, seed),
                              device, run_dir)
        with timed(seconds, "pretrain"):
            teacher, teacher_info = pretrain_teacher(task, ctx)
        if cfg.students:  # with students=false nothing is distilled: no knowledge to extract
            with timed(seconds, "extract"), distributed.main_first():  # torchrun: the others read rank 0's file
                knowledge = extract_knowledge(task, teacher, teacher_info["key"], objective, data, run_dir)
                # learnable strategy parts start the same whether or not the teacher was cached
                torch.manual_seed(cfg.seed)
                objective.setup(knowledge, task.hidden_dim(cfg.student, data))
        models: dict[str, Trained] = {"teacher": (teacher, teacher_info)}
        with timed(seconds, "distill"):
            if cfg.students and cfg.train_student_alone:
                models["student"] = cache.get_or_fit("student",
                                                     lambda key: fit_alone(task, "student", data, run_dir, key))
            if cfg.students:
                models["student_kd"] = distill_student(task, objective, data, run_dir)
        refits: dict[str, Trained] = {}
        if seen is not None:
            with timed(seconds, "refit"):
                refits = refit_models(task, cache, models, seen, run_dir)
        metrics = None
        if main:  # torchrun: evaluated once, on rank 0
            models.update(task.baselines(data))
            with timed(seconds, "evaluate"):
                results = {role: task.evaluate(role, model, data) for role, (model, _) in models.items()}
                for role, (_, info) in models.items():
                    add_training_summary(results[role], role, info)
                for role, (model, info) in refits.items():
                    again = task.evaluate(role, model, data)
                    add_training_summary(again, f"{role}_refit", info)
                    again.metrics["refit"] = info["refit"]
                    results[role] = merge_refit(results[role], again)
            protocol = {**task.protocol(), "data": task.data_protocol()}
            info = run_info(cfg, device, models, data.split_key, protocol, seconds, started, data.data.fingerprint)
            metrics = write_results(run_dir, info, results)
            write_run_report(run_dir)
            tracker.finish(metrics)
    return distributed.share(metrics)


def pretrain_teacher(task: Task, ctx: TransferContext) -> Trained:
    """Stage 1: the teacher trained on ground truth (or by transfer), from the model cache when it
    is there; then the task's adjustments (zero-shot cold items)."""
    teacher, info = ctx.cache.get_or_fit("teacher", lambda key: task.fit_teacher(ctx, key))
    return teacher, task.after_teacher(teacher, info, ctx.data)


def fit_alone(task: Task, role: str, data: TaskData, run_dir: Path, key: str) -> Trained:
    """`role`'s model trained on ground truth only (the student-alone baseline)."""
    model = task.new_model(task.cfg[role], data, role_seed(task.cfg, role))
    return model, task.fit(model, no_distillation(task.name), role, data, run_dir / "checkpoints" / f"{role}_{key}",
                           role_seed(task.cfg, role))


def extract_knowledge(task: Task, teacher: nn.Module, key: str, objective: DistillationObjective, data: TaskData,
                      run_dir: Path) -> TeacherKnowledge:
    """Stage 2: as much of the teacher's knowledge as the strategies need, saved in the run folder."""
    return task.extract(teacher, key, objective.needs, data, run_dir / "knowledge" / "teacher_knowledge.pt")


def distill_student(task: Task, objective: DistillationObjective, data: TaskData, run_dir: Path) -> Trained:
    """Stage 3: train the student with `objective`, or load the finished checkpoint of this run."""
    role, final = "student_kd", run_dir / "checkpoints" / "student_kd.pt"
    if distributed.share(final.exists()):  # torchrun: rank 0 decides
        log.info("distill: %s already finished, loading %s", role, final)
        student, extra = load_model(final, task.device)
        task.after_load(student, data)
        return student, extra
    student = task.new_model(task.cfg.student, data, task.cfg.seed)
    log.info("distill: training %s", role)
    extra = task.fit(student, objective, role, data, run_dir / "checkpoints" / role, task.cfg.seed)
    extra["loss_formula"] = objective.formula()  # names seen in training
    log.info("distill: %s trained with %s", role, extra["loss_formula"])
    if distributed.is_main():
        save_model(final, student, extra=extra)
    distributed.barrier()
    return student, extra
