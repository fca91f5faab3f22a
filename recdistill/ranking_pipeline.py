"""The four stages for the top-K ranking task: pretrain teacher -> extract -> distill -> evaluate.

The same shape as `recdistill.pipeline` (which dispatches here when `task=ranking`): models are
ranking models, validation is a ranking evaluation on the valid split, knowledge is each user's
teacher top-K list and the teacher's user and item representations, and every evaluated model's
test top-K lists are saved as `topk.parquet`.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from recdistill import runinfo
from recdistill.data.ranking_data import RankingData
from recdistill.data.splits import Split
from recdistill.data.tables import RecData
from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.objective import DistillationObjective, build_objective
from recdistill.errors import ConfigError
from recdistill.evaluation.efficiency import efficiency_report
from recdistill.evaluation.ranking_eval import evaluate_ranking, full_ranking_topk, topk_frame
from recdistill.models.checkpoint import load_model, save_model
from recdistill.models.ranking_base import RankingModel, RankingShape
from recdistill.models.registry import build_model
from recdistill.pipeline import (MODEL_CACHE_FORMAT, _no_distillation, cached_model, claim_run_dir,
                                 load_or_make_split, role_seed, run_info)
from recdistill.reporting.results import RoleResult, add_training_summary, write_results
from recdistill.reporting.run_report import write_run_report
from recdistill.training.loop import train
from recdistill.utils.atomic import write_parquet

log = logging.getLogger(__name__)

PROTOCOLS = ("full", "sampled")


@dataclass
class RankingRun:
    """Everything the stages share about the data: tables, split, per-user lists, sizes."""

    data: RecData
    split: Split
    split_key: str
    lists: RankingData
    shape: RankingShape
    candidates: dict[str, torch.Tensor]  # split -> item pool ranked over (cold-item splits); absent = all items


def prepare_ranking_data(cfg: DictConfig, run_dir: Path) -> RankingRun:
    """Load the dataset, make (or reuse) the split, and build the per-user item lists."""
    if cfg.evaluator.protocol not in PROTOCOLS:
        raise ConfigError(f"evaluator.protocol={cfg.evaluator.protocol!r} unknown; valid: {list(PROTOCOLS)}")
    data, split, key = load_or_make_split(cfg, run_dir)
    frames = {"train": split.train, "valid": split.valid, "test": split.test}
    lists = RankingData(frames, data.n_users, data.n_items, cfg.evaluator.history_length)
    shape = RankingShape(n_users=data.n_users, n_items=data.n_items, max_length=cfg.evaluator.history_length)
    candidates = {name: torch.as_tensor(split.extra[f"cold_{name}_items"]["item"].to_numpy(copy=True)).long()
                  for name in ("valid", "test") if f"cold_{name}_items" in split.extra}
    if candidates:
        log.info("ranking over cold item pools: %s", {k: len(v) for k, v in candidates.items()})
    return RankingRun(data, split, key, lists, shape, candidates)


def new_ranking_model(model_cfg: DictConfig, run: RankingRun, seed: int) -> RankingModel:
    """A freshly initialised (seeded) ranking model, fitted to the training graph where it has one."""
    torch.manual_seed(seed)
    model = build_model(model_cfg, run.shape)
    if not isinstance(model, RankingModel):
        raise ConfigError(f"model {model_cfg.name!r} is a rating model; task=ranking needs a ranking model "
                          "(bpr_mf, lightgcn, sasrec, gru4rec, popularity, item_knn)")
    model.fit(run.lists.lists["train"])
    return model


def ranking_model_key(cfg: DictConfig, run: RankingRun, role: str) -> str:
    """Hash of everything that determines `role`'s model trained on ground truth."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    for where in ("cache_dir", "source"):  # where the data came from does not change the model
        dataset.pop(where, None)
    evaluator = OmegaConf.to_container(cfg.evaluator, resolve=True)
    selection = {k: evaluator[k] for k in ("history_length", "protocol", "mask_history", "n_negatives")}
    if role == "teacher" and cfg.transfer.mode != "none":  # zero-shot selects epochs on mapped cold items
        selection["transfer"] = OmegaConf.to_container(cfg.transfer, resolve=True)
    return runinfo.stable_hash({
        "task": cfg.task, "dataset": dataset, "split": OmegaConf.to_container(cfg.split, resolve=True),
        "split_key": run.split_key, "model": OmegaConf.to_container(cfg[role], resolve=True),
        "trainer": OmegaConf.to_container(cfg.trainer[role]), "seed": role_seed(cfg, role),
        "selection": selection, "format": MODEL_CACHE_FORMAT})


def validation(cfg: DictConfig, run: RankingRun, device: torch.device) -> Callable[[RankingModel], dict]:
    """The function the training loop calls after each epoch: ranking metrics on the valid split."""
    def validate(model: RankingModel) -> dict[str, float]:
        if cfg.transfer.mode == "zero_shot":  # select on what is served: cold items mapped from content
            from recdistill.transfer.cold_items import zero_shot_teacher

            model = copy.deepcopy(model)
            zero_shot_teacher(cfg, model, run, device, quiet=True)
        metrics, _, _ = _evaluate(cfg, model, run, "valid", device)
        return metrics
    return validate


def fit_ranking_model(cfg: DictConfig, model: RankingModel, objective: DistillationObjective, role: str,
                      run: RankingRun, checkpoint_dir: Path, device: torch.device, seed: int) -> dict:
    """Train `model` on `objective` (models fitted by counting need no loop); returns the summary."""
    if model.input_kind == "none":
        if objective.strategies:
            raise ConfigError(f"{model.config.name!r} is fitted by counting; it cannot be distilled into")
        return {"training": {"fitted_by": "counting", "epochs": 0, "seconds": 0.0}}
    loop = cfg.trainer[role if role == "teacher" else "student"]
    batches = run.lists.training_batches(model.input_kind, loop.batch_size,
                                         n_negatives=getattr(model.config, "n_negatives", 1),
                                         stride=loop.sequence_stride)
    result = train(model, objective, batches, validation(cfg, run, device), loop, device, seed,
                   checkpoint_dir, role, cfg.evaluator.user_batch_size)
    model.load_state_dict(result.best_state)
    return {"training": result.summary()}


def train_alone(cfg: DictConfig, role: str, run: RankingRun, run_dir: Path, device: torch.device
                ) -> tuple[RankingModel, dict]:
    """The teacher, or the student without distillation: trained once per key, then cached."""
    key = ranking_model_key(cfg, run, role)

    def fit() -> tuple[RankingModel, dict]:
        model = new_ranking_model(cfg[role], run, role_seed(cfg, role))
        extra = fit_ranking_model(cfg, model, build_objective(_no_distillation()), role, run,
                                  run_dir / "checkpoints" / f"{role}_{key}", device, role_seed(cfg, role))
        return model, extra

    def refit(model: RankingModel) -> None:
        model.fit(run.lists.lists["train"])
    return cached_model(cfg, role, key, fit, device, after_load=refit)


def extract_ranking_knowledge(cfg: DictConfig, teacher: RankingModel, key: str, needs: frozenset[str],
                              run: RankingRun, run_dir: Path, device: torch.device) -> TeacherKnowledge:
    """Stage 2: each user's teacher top-K list (training items excluded) and, for dot-product
    teachers, the teacher's user and item representations."""
    path = run_dir / "knowledge" / "teacher_knowledge.pt"
    topk = int(cfg.distill.teacher_topk)
    if path.exists():
        knowledge = TeacherKnowledge.load(path)
        if knowledge.teacher_key == key and needs <= set(knowledge.tensors) and knowledge.meta.get("topk") == topk:
            log.info("extract: reusing %s", path)
            return knowledge
    wants_repr = needs & {"user_repr", "item_repr"}
    if wants_repr and not teacher.dot_product_scores:
        raise ConfigError(f"distillation needs {sorted(wants_repr)}, but teacher {teacher.config.name!r} does not "
                          "score by a dot product of user and item vectors; choose another teacher or strategy")
    lists, tensors = run.lists, {}
    users = lists.eval_users("train")
    if needs & {"topk_items", "topk_scores"}:
        ranked = full_ranking_topk(teacher, lists, "train", topk, users=users,
                                   batch_size=cfg.evaluator.user_batch_size, item_chunk=cfg.evaluator.item_chunk,
                                   mask_history=True, device=device)
        tensors["topk_items"] = torch.full((lists.n_users, topk), -1, dtype=torch.long)
        tensors["topk_items"][ranked.users] = ranked.items
        tensors["topk_scores"] = torch.full((lists.n_users, topk), float("-inf"))
        tensors["topk_scores"][ranked.users] = ranked.scores.float()
    if wants_repr:
        tensors.update(_representations(teacher, lists, users, cfg.evaluator.user_batch_size, device))
    tensors = {kind: tensors[kind] for kind in sorted(needs)}
    knowledge = TeacherKnowledge(teacher_key=key, tensors=tensors,
                                 meta={"n_users": lists.n_users, "n_items": lists.n_items, "topk": topk,
                                       "split_key": run.split_key})
    knowledge.save(path)
    log.info("extract: %s for %d users -> %s", sorted(needs) or "nothing", len(users), path)
    return knowledge


@torch.no_grad()
def _representations(teacher: RankingModel, lists: RankingData, users: torch.Tensor, batch_size: int,
                     device: torch.device) -> dict[str, torch.Tensor]:
    was_training = teacher.training
    teacher.eval()
    states = [teacher(lists.user_batch(users[i:i + batch_size], "train", device)).state.cpu()
              for i in range(0, len(users), batch_size)]
    user_repr = torch.zeros(lists.n_users, states[0].shape[1])
    user_repr[users] = torch.cat(states).float()
    item_repr = teacher.item_vectors(torch.arange(lists.n_items, device=device)).float().cpu()
    teacher.train(was_training)
    return {"user_repr": user_repr, "item_repr": item_repr}


def distill_student(cfg: DictConfig, role: str, objective: DistillationObjective, run: RankingRun,
                    run_dir: Path, device: torch.device) -> tuple[RankingModel, dict]:
    """Stage 3: train the student with `objective`, or load the finished checkpoint of this run."""
    final = run_dir / "checkpoints" / f"{role}.pt"
    if final.exists():
        log.info("distill: %s already finished, loading %s", role, final)
        model, extra = load_model(final, device)
        model.fit(run.lists.lists["train"])
        return model, extra
    student = new_ranking_model(cfg.student, run, cfg.seed)
    log.info("distill: training %s", role)
    extra = fit_ranking_model(cfg, student, objective, role, run, run_dir / "checkpoints" / role, device, cfg.seed)
    extra["loss_formula"] = objective.formula()
    log.info("distill: %s trained with %s", role, extra["loss_formula"])
    save_model(final, student, extra=extra)
    return student, extra


def _evaluate(cfg: DictConfig, model: RankingModel, run: RankingRun, split: str, device: torch.device
              ) -> tuple[dict[str, float], pd.DataFrame, Any]:
    evaluator = cfg.evaluator
    return evaluate_ranking(model, run.lists, split, ks=tuple(evaluator.ks), protocol=evaluator.protocol,
                            mask_history=evaluator.mask_history, n_negatives=evaluator.n_negatives,
                            seed=cfg.seed, batch_size=evaluator.user_batch_size, item_chunk=evaluator.item_chunk,
                            device=device, candidates=run.candidates.get(split))


def evaluate_role(role: str, model: RankingModel, info: dict, run: RankingRun, cfg: DictConfig,
                  device: torch.device) -> tuple[RoleResult, pd.DataFrame]:
    """Valid/test metrics, per-user test metrics, efficiency and test top-K lists of one model."""
    block: dict[str, Any] = {"model": model.config.name}
    block["valid"], _, _ = _evaluate(cfg, model, run, "valid", device)
    block["test"], per_user, topk = _evaluate(cfg, model, run, "test", device)
    per_user.insert(0, "role", role)
    users = run.lists.eval_users("test")[: cfg.evaluator.latency_batch_size]
    batch = run.lists.user_batch(users, "test", device)
    all_items = torch.arange(run.lists.n_items, device=device)
    block["efficiency"] = efficiency_report(model, batch, forward=lambda m, b: m.score_items(m(b).state, all_items),
                                            n_repeats=cfg.evaluator.latency_repeats)
    history = add_training_summary(block, role, info)
    log.info("evaluate %s: test %s", role, {k: round(v, 4) for k, v in block["test"].items() if "@10" in k})
    frame = topk_frame(topk)
    frame.insert(0, "role", role)
    return RoleResult(block, per_user, history), frame


#: Ranking baselines (`baselines=[...]`): model name and how it is fitted.
RANKING_BASELINES = ("popularity", "random", "oracle_popularity")


def ranking_baselines(cfg: DictConfig, run: RankingRun) -> dict[str, tuple[RankingModel, dict]]:
    """The configured reference rankers: training popularity, random scores, and the oracle
    popularity of the test split (an upper reference, see `models.reference_scores`)."""
    baselines: dict[str, tuple[RankingModel, dict]] = {}
    for name in cfg.baselines:
        if name not in RANKING_BASELINES:
            raise ConfigError(f"baseline {name!r} unknown for the ranking task; valid: {list(RANKING_BASELINES)}")
        if name == "popularity":
            model = build_model({"name": "popularity"}, run.shape)
            model.fit(run.lists.lists["train"])
            info = {"fitted_by": "training interaction counts"}
        elif name == "random":
            model = build_model({"name": "random_scores", "seed": cfg.seed}, run.shape)
            info = {"fitted_by": "nothing: hashed random scores"}
        else:
            model = build_model({"name": "oracle_popularity"}, run.shape)
            model.fit_table(run.split.test)
            info = {"fitted_by": "ORACLE: counts of other users' test interactions"}
        baselines[name] = (model, {"training": info})
    return baselines


def ranking_protocol(cfg: DictConfig) -> dict[str, Any]:
    """The evaluation protocol, written next to every number."""
    evaluator = cfg.evaluator
    return {
        "task": "ranking",
        "split": OmegaConf.to_container(cfg.split, resolve=True),
        "ranking": (f"sampled: the user's {'test'} items among {evaluator.n_negatives} uniformly sampled items "
                    "the user never interacted with" if evaluator.protocol == "sampled"
                    else "full: every item in the catalogue"),
        "protocol": evaluator.protocol,
        "mask_history": bool(evaluator.mask_history),
        "input_history": {"train": "train (extraction)", "valid": "train", "test": "train + valid"},
        "history_length": evaluator.history_length,
        "ks": list(evaluator.ks),
        "item_pool": "cold items of the split (valid: cold validation items, test: cold test items)"
                     if cfg.split.name == "cold_item" else "all items",
        "model_selection": "best validation epoch by trainer monitor; test never used for selection",
    }


def run_ranking(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run the whole ranking study for one config; returns the metrics dict also written to metrics.json."""
    started = time.time()
    claim_run_dir(cfg, run_dir)
    device = runinfo.resolve_device(cfg.device)
    log.info("run folder %s, device %s, seed %d, task ranking", run_dir, device, cfg.seed)
    stage_seconds: dict[str, float] = {}

    clock = time.perf_counter()
    run = prepare_ranking_data(cfg, run_dir)
    objective = build_objective(cfg.distill, task="ranking")
    stage_seconds["data"] = time.perf_counter() - clock

    clock = time.perf_counter()
    teacher, teacher_info = train_alone(cfg, "teacher", run, run_dir, device)  # stage 1: pretrain
    if cfg.transfer.mode == "zero_shot":
        from recdistill.transfer.cold_items import zero_shot_teacher

        teacher_info = {**teacher_info, "transfer": zero_shot_teacher(cfg, teacher, run, device)}
    elif cfg.transfer.mode != "none":
        raise ConfigError(f"transfer.mode={cfg.transfer.mode!r} does not apply to the ranking task; "
                          "valid: none, zero_shot")
    stage_seconds["pretrain"] = time.perf_counter() - clock

    clock = time.perf_counter()
    knowledge = extract_ranking_knowledge(cfg, teacher, teacher_info["key"], objective.needs, run, run_dir, device)
    torch.manual_seed(cfg.seed)  # learnable strategy parts start the same whether or not the teacher was cached
    objective.setup(knowledge, build_model(cfg.student, run.shape).hidden_dim if cfg.students else 0)
    stage_seconds["extract"] = time.perf_counter() - clock

    clock = time.perf_counter()
    models: dict[str, tuple[RankingModel, dict]] = {"teacher": (teacher, teacher_info)}
    if cfg.students and cfg.train_student_alone:
        models["student"] = train_alone(cfg, "student", run, run_dir, device)
    if cfg.students:
        models["student_kd"] = distill_student(cfg, "student_kd", objective, run, run_dir, device)
    stage_seconds["distill"] = time.perf_counter() - clock
    models.update(ranking_baselines(cfg, run))

    clock = time.perf_counter()
    evaluated = {role: evaluate_role(role, model, info, run, cfg, device) for role, (model, info) in models.items()}
    results = {role: result for role, (result, _) in evaluated.items()}
    write_parquet(run_dir / "topk.parquet", pd.concat([frame for _, frame in evaluated.values()], ignore_index=True))
    stage_seconds["evaluate"] = time.perf_counter() - clock

    info = run_info(cfg, device, models, teacher_info, run.split_key, ranking_protocol(cfg), stage_seconds, started)
    metrics = write_results(run_dir, info, results)
    write_run_report(run_dir)
    return metrics
