"""`trainer.refit_on_valid`: after model selection on validation, train every model again on
train + valid and report test metrics of the refits.

A common final step when the validation split is only used to choose the number of epochs (as in
scikit-learn's `refit` and Surprise users' refits on the full training data): each role's model is
trained again from its initial weights (same seed) on the training chunks of train + valid for the
number of epochs selected in the first pass, under the same learning-rate schedule, with nothing
validated. The teacher's refit is cached like the teacher; its knowledge is extracted again on the
train + valid chunks, and the distilled student's refit learns from it (as the first pass's
distilled student learns from the first teacher). Validation metrics stay those of the first pass
(a refit has trained on the validation split); the first pass's test metrics are kept as
`test_without_refit`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from recdistill.distill.objective import build_objective
from recdistill.evaluation.result import RoleResult
from recdistill.models.checkpoint import load_model, save_model
from recdistill.run.cache import ModelCache, role_seed
from recdistill.tasks.base import Task, TaskData, no_distillation
from recdistill.training import distributed

log = logging.getLogger(__name__)
Trained = tuple[nn.Module, dict]


def selected_epochs(info: dict, role: str) -> int:
    """The epoch the first pass selected for `role` (its training summary's `best_epoch`)."""
    epochs = info.get("training", {}).get("best_epoch")
    assert epochs, f"refit: {role} has no selected epoch in its training summary {info.get('training')}"
    return int(epochs)


def refit_models(task: Task, cache: ModelCache, models: dict[str, Trained], seen: TaskData,
                 run_dir: Path) -> dict[str, Trained]:
    """The refit on `seen` (`task.refit_data`: train + valid) of every trained role in `models`
    (teacher, student, student_kd), each with `refit: {epochs, targets}` in its info. Skips work
    already done: the cache holds the teacher and student-alone refits, the run folder the distilled
    student's."""
    cfg = task.cfg

    def refit_alone(role: str) -> Trained:
        epochs = selected_epochs(models[role][1], role)

        def fit(key: str) -> Trained:
            model = task.new_model(cfg[role], seen, role_seed(cfg, role))
            return model, task.fit(model, no_distillation(task.name), role, seen,
                                   run_dir / "checkpoints" / f"{role}_refit_{key}", role_seed(cfg, role),
                                   stop_after=epochs)
        model, info = cache.get_or_fit(role, fit, refit_epochs=epochs)
        return model, {**info, "refit": {"epochs": epochs, "targets": len(seen.train), "key": info["key"]}}

    refits = {"teacher": refit_alone("teacher")}
    if "student" in models:
        refits["student"] = refit_alone("student")
    if "student_kd" in models:
        refits["student_kd"] = refit_distilled(task, refits["teacher"], selected_epochs(models["student_kd"][1],
                                                                                        "student_kd"), seen, run_dir)
    return refits


def refit_distilled(task: Task, teacher: Trained, epochs: int, seen: TaskData, run_dir: Path) -> Trained:
    """The distilled student trained again on train + valid, from the refitted teacher's knowledge of
    those targets; loaded from the run folder when this run finished it already."""
    role, final = "student_kd", run_dir / "checkpoints" / "student_kd_refit.pt"
    refit = {"epochs": epochs, "targets": len(seen.train), "key": None}  # None: in the run folder, not the cache
    if distributed.share(final.exists()):
        log.info("refit: %s already finished, loading %s", role, final)
        student, extra = load_model(final, task.device)
        task.after_load(student, seen)
        return student, extra
    objective = build_objective(task.cfg.distill, task=task.name)
    with distributed.main_first():
        knowledge = task.extract(teacher[0], teacher[1]["key"], objective.needs, seen,
                                 run_dir / "knowledge" / "teacher_knowledge_refit.pt")
        torch.manual_seed(task.cfg.seed)
        objective.setup(knowledge, task.hidden_dim(task.cfg.student, seen))
    student = task.new_model(task.cfg.student, seen, task.cfg.seed)
    log.info("refit: training %s on train + valid for %d epochs", role, epochs)
    extra = task.fit(student, objective, role, seen, run_dir / "checkpoints" / f"{role}_refit", task.cfg.seed,
                     stop_after=epochs)
    extra.update(loss_formula=objective.formula(), refit=refit)
    if distributed.is_main():
        save_model(final, student, extra=extra)
    distributed.barrier()
    return student, extra


def merge_refit(first: RoleResult, refit: RoleResult) -> RoleResult:
    """One role's result from its first pass and its refit (each with its training summary added,
    the refit's history under the role `<role>_refit`): the refit's test metrics, per-user test
    metrics and efficiency; the first pass's validation metrics and training summary; the first pass's
    test metrics as `test_without_refit`; and the refit's epochs, targets and seconds as `refit`."""
    training = refit.metrics["training"]
    metrics = {**first.metrics, "test": refit.metrics["test"], "efficiency": refit.metrics["efficiency"],
               "test_without_refit": first.metrics["test"],
               "refit": {**refit.metrics.get("refit", {}), "seconds": training.get("seconds"),
                         "from_cache": training.get("from_cache", False)}}
    return RoleResult(metrics=metrics, per_user=refit.per_user,
                      history=pd.concat([first.history, refit.history], ignore_index=True), topk=refit.topk)
