"""The top-K ranking task: recommend each user the items they interact with next.

Inputs: per-user item lists (valid reads train, test reads train + valid); models score every item
(full ranking, item-chunked) or, under the explicitly named `sampled` protocol, the truth among
sampled negatives. Knowledge is per user and item: each user's teacher top-K list and, for
dot-product teachers, the teacher's user and item vectors. Every evaluated role's test top-K
lists are saved (`topk.parquet`). Item cold start by content (`transfer=zero_shot`) applies here.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from recdistill.data.duplicates import repeat_conflicts
from recdistill.data.ranking_data import RankingData
from recdistill.data.split_cache import load_or_make_split
from recdistill.data.splits import Split
from recdistill.data.tie_keys import TieKeys
from recdistill.distill.extract import load_or_extract, per_user_knowledge
from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.objective import DistillationObjective
from recdistill.errors import ConfigError
from recdistill.evaluation.ranking_role import evaluate_ranking_role, evaluate_split
from recdistill.evaluation.result import RoleResult
from recdistill.models.ranking_base import RankingModel, RankingShape
from recdistill.models.registry import build_model
from recdistill.tasks.base import Task, TaskData
from recdistill.training.loop import train
from recdistill.transfer.cold_items import zero_shot_teacher

log = logging.getLogger(__name__)

#: Ranking baselines (`baselines=[...]`): the reference model each one is.
RANKING_BASELINES = {"popularity": "training interaction counts", "random": "nothing: hashed random scores",
                     "oracle_popularity": "ORACLE: counts of other users' test interactions"}


@dataclass
class RankingRun(TaskData):
    """The split as per-user item lists, the model shape, and the item pool of cold-item splits."""

    lists: RankingData
    shape: RankingShape
    candidates: dict[str, torch.Tensor]  # split -> item pool ranked over (cold-item splits); absent = all items


def check_no_masked_repeats(split: Split, given: bool = False) -> None:
    """ConfigError when a held-out item is also in the user's input history (repeats kept by
    `dataset.duplicates=keep_all`, or pairs a given split's files share): the masked history would
    remove it from the user's ranking."""
    test = repeat_conflicts(pd.concat([split.train, split.valid]), split.test)
    valid = repeat_conflicts(split.train, split.valid)
    if test or valid:
        cause, fix = (("the given split's files hold the same (user, item) pair in a history and a held-out part",
                       "remove those rows from the files") if given else
                      ("repeats kept by dataset.duplicates=keep_all",
                       "set dataset.duplicates=keep_last (each pair's latest interaction)"))
        raise ConfigError(f"{test} test users and {valid} validation users have a held-out item that is also in "
                          f"their input history ({cause}); evaluator.mask_history=true removes it from their "
                          f"ranking, so they could never hit it. Either {fix}, or set "
                          "evaluator.mask_history=false (recommending seen items again)")


class RankingTask(Task):
    """Top-K recommendation (see the module docstring)."""

    name = "ranking"
    model_base = RankingModel
    transfer_modes = ("none", "zero_shot")
    baseline_names = tuple(RANKING_BASELINES)

    def prepare(self, run_dir: Path) -> RankingRun:
        cfg = self.cfg
        data, split, key = load_or_make_split(cfg.dataset, self.split, cfg.seed, self.cache_dir, run_dir)
        if self.evaluator.mask_history:
            check_no_masked_repeats(split, given=self.split.name == "given")
        frames = {"train": split.train, "valid": split.valid, "test": split.test}
        ties = TieKeys(cfg.seed, data.user_ids, data.item_ids)  # one tie rule for every role of the run
        lists = RankingData(frames, data.n_users, data.n_items, self.evaluator.history_length, ties)
        shape = RankingShape(n_users=data.n_users, n_items=data.n_items, max_length=self.evaluator.history_length)
        candidates = {name: torch.as_tensor(split.extra[f"cold_{name}_items"]["item"].to_numpy(copy=True)).long()
                      for name in ("valid", "test") if f"cold_{name}_items" in split.extra}
        if candidates:
            log.info("ranking over cold item pools: %s", {k: len(v) for k, v in candidates.items()})
        return RankingRun(data, split, key, lists, shape, candidates)

    def after_load(self, model: nn.Module, data: RankingRun) -> None:
        model.fit(data.lists.lists["train"])

    def validator(self, data: RankingRun) -> Callable[[RankingModel], dict[str, float]]:
        """Ranking metrics on the valid split; under zero-shot cold start, of a copy of the model with
        the cold items mapped from content, so epochs are selected on what is served."""
        def validate(model: RankingModel) -> dict[str, float]:
            if self.cfg.transfer.mode == "zero_shot":
                model = copy.deepcopy(model)
                zero_shot_teacher(self.cfg, model, data, self.device, quiet=True)
            metrics, _, _ = evaluate_split(model, data.lists, "valid", self.evaluator, self.cfg.seed,
                                           self.device, data.candidates.get("valid"))
            return metrics
        return validate

    def fit(self, model: nn.Module, objective: DistillationObjective, role: str, data: RankingRun,
            checkpoint_dir: Path, seed: int, stop_after: int | None = None) -> dict:
        assert stop_after is None, "ranking has no refit_data, so nothing asks it to refit"
        if model.input_kind == "none":
            if objective.strategies:
                raise ConfigError(f"{model.config.name!r} is fitted by counting; it cannot be distilled into")
            return {"training": {"fitted_by": "counting", "epochs": 0, "seconds": 0.0}}
        loop = self.cfg.trainer["teacher" if role == "teacher" else "student"]
        batches = data.lists.training_batches(model.input_kind, loop.batch_size,
                                              n_negatives=model.pair_negatives(),
                                              stride=loop.sequence_stride)
        result = train(model, objective, batches, self.validator(data), loop, self.device, seed, checkpoint_dir, role)
        model.load_state_dict(result.best_state)
        return {"training": result.summary()}

    def after_teacher(self, teacher: nn.Module, info: dict, data: RankingRun) -> dict:
        if self.cfg.transfer.mode == "zero_shot":
            return {**info, "transfer": zero_shot_teacher(self.cfg, teacher, data, self.device)}
        return info

    def check_plan(self, objective: DistillationObjective, data: RankingRun) -> None:
        """Before any training: users to evaluate, and teacher top-K lists that the catalogue and the
        strategies' parameters allow."""
        for split in ("valid", "test"):
            if len(data.lists.eval_users(split)) == 0:
                raise ConfigError(f"no user has a {split} interaction after the split ({split} is empty: "
                                  f"{len(data.split.train)} train, {len(data.split.valid)} valid, "
                                  f"{len(data.split.test)} test rows); the data or its filters leave too little "
                                  "(see data_report.json)")
        topk = int(self.cfg.distill.teacher_topk)
        if objective.needs & {"topk_items", "topk_scores"}:
            if topk >= data.lists.n_items:
                raise ConfigError(f"distill.teacher_topk={topk} must be below the number of items "
                                  f"({data.lists.n_items}): the strategies sample items outside each user's teacher "
                                  "top-K list; lower it")
            for strategy in objective.strategies.values():
                strategy.check_ranks(topk)

    def extract(self, teacher: nn.Module, teacher_key: str, needs: frozenset[str], data: RankingRun, path: Path
                ) -> TeacherKnowledge:
        lists, evaluator, topk = data.lists, self.evaluator, int(self.cfg.distill.teacher_topk)
        meta = {"n_users": lists.n_users, "n_items": lists.n_items, "topk": topk, "split_key": data.split_key,
                "tie_seed": lists.ties.seed}
        return load_or_extract(path, teacher_key, needs, meta, lambda: per_user_knowledge(
            teacher, lists, needs, topk, evaluator.user_batch_size, evaluator.item_chunk, self.device))

    def evaluate(self, role: str, model: nn.Module, data: RankingRun) -> RoleResult:
        return evaluate_ranking_role(role, model, data.lists, self.evaluator, self.cfg.seed, self.device,
                                     data.candidates)

    def baselines(self, data: RankingRun) -> dict[str, tuple[nn.Module, dict]]:
        """Training popularity, random scores, and the oracle popularity of the test split (an upper
        reference, see `models.reference_scores`)."""
        baselines: dict[str, tuple[nn.Module, dict]] = {}
        for name in self.cfg.baselines:
            if name == "random":
                model = build_model({"name": "random_scores", "seed": self.cfg.seed}, data.shape)
            elif name == "popularity":
                model = build_model({"name": name}, data.shape)
                model.fit(data.lists.lists["train"])
            else:
                model = build_model({"name": name}, data.shape)
                model.fit_table(data.split.test)
            baselines[name] = (model, {"training": {"fitted_by": RANKING_BASELINES[name]}})
        return baselines

    def protocol(self) -> dict[str, Any]:
        evaluator = self.evaluator
        return {
            "task": self.name,
            "split": asdict(self.split),
            "ranking": (f"sampled: the user's test items among {evaluator.n_negatives} uniformly sampled items "
                        "the user never interacted with (fewer where a user has fewer such items)"
                        if evaluator.protocol == "sampled"
                        else "full: every item in the catalogue"),
            "protocol": evaluator.protocol,
            "mask_history": bool(evaluator.mask_history),
            "input_history": {"train": "train (extraction)", "valid": "train", "test": "train + valid"},
            "history_length": evaluator.history_length,
            "ks": list(evaluator.ks),
            "ties": f"equal scores ordered by a hash of (seed={self.cfg.seed}, raw user id, raw item id), the same "
                    "for every role and for teacher top-K extraction; never by internal id",
            "item_pool": "cold items of the split (valid: cold validation items, test: cold test items)"
                         if self.split.name == "cold_item" else "all items",
            "model_selection": self.model_selection(),
        }
