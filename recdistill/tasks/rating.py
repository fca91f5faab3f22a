"""The rating task: predict a user's explicit rating of an item from the ratings they gave before.

Inputs follow the protocol `earlier_visible`: a training target reads the user's earlier training
ratings, a validation target reads training, a test target training + validation; never a test
rating. Knowledge is per training example (the teacher's class logits and hidden states).
Metrics: Accuracy (argmax class == true rating), MAE and RMSE (on the model's point estimate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from recdistill.data.batching import (FIVE_STARS, RatingWindows, TrainingSequences, UserRows, build_split_data,
                                      build_user_rows, time_order_of_rows)
from recdistill.data.split_cache import load_or_make_split
from recdistill.distill.extract import load_or_extract, per_example_knowledge
from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.objective import DistillationObjective
from recdistill.errors import ConfigError
from recdistill.evaluation.rating_eval import evaluate_rating_role, rating_validator
from recdistill.evaluation.result import RoleResult
from recdistill.models.base import DataShape, RatingModel
from recdistill.models.registry import build_model
from recdistill.tasks.base import Task, TaskData
from recdistill.training.loop import train
from recdistill.transfer.protocols import TransferContext
from recdistill.transfer.teacher import transferred_teacher

#: Rating baselines (`baselines=[...]`) and the mean each predicts.
RATING_BASELINES = {"global_mean": "global", "item_mean": "item"}


@dataclass
class RatingData(TaskData):
    """The split as rating model inputs."""

    train: TrainingSequences  # causal chunks of the training split, for training and extraction
    windows: dict[str, RatingWindows]  # one exact-protocol window per target
    evaluation: dict[str, UserRows | RatingWindows]  # the same inputs, per user where the split allows
    shape: DataShape


class RatingTask(Task):
    """Explicit rating prediction (see the module docstring)."""

    name = "rating"
    model_base = RatingModel
    transfer_modes = ("none", "shared_weights", "meta")
    refits = True
    baseline_names = tuple(RATING_BASELINES)

    def prepare(self, run_dir: Path) -> RatingData:
        cfg = self.cfg
        if cfg.dataset.get("positive_threshold") is not None:
            raise ConfigError(f"dataset.positive_threshold={cfg.dataset.positive_threshold} keeps only high ratings, "
                              "which is for ranking on explicit data; task=rating predicts every rating: remove it")
        data, split, key = load_or_make_split(cfg.dataset, self.split, cfg.seed, self.cache_dir, run_dir)
        if not data.has_rating:
            raise ConfigError(f"task=rating needs explicit ratings; dataset {data.name!r} has no rating column; "
                              "use task=ranking or map dataset.columns.rating")
        frames = {"train": split.train, "valid": split.valid, "test": split.test}
        scale = data.rating_scale or FIVE_STARS
        train_data, windows = build_split_data(frames, self.evaluator.history_length, scale=scale)
        shape = DataShape(n_users=data.n_users, n_items=data.n_items, n_classes=scale.n_classes,
                          history_length=self.evaluator.history_length,
                          rating_mean=float(split.train["rating"].mean()),
                          rating_values=tuple(float(v) for v in scale.values()))
        evaluation = {name: build_user_rows(w) or w for name, w in windows.items()}
        return RatingData(data, split, key, train_data, windows, evaluation, shape)

    def fit(self, model: nn.Module, objective: DistillationObjective, role: str, data: RatingData,
            checkpoint_dir: Path, seed: int, stop_after: int | None = None) -> dict:
        validate = (rating_validator(data.evaluation["valid"], self.cfg.trainer.eval_batch_size, self.device)
                    if stop_after is None else None)
        loop = self.cfg.trainer["teacher" if role == "teacher" else "student"]
        result = train(model, objective, data.train, validate, loop, self.device, seed, checkpoint_dir, role,
                       stop_after=stop_after)
        model.load_state_dict(result.best_state)
        return {"training": result.summary()}

    def refit_data(self, data: RatingData) -> RatingData:
        """Training chunks over train + valid (each valid rating then reads the user's earlier train
        and valid ratings, as the test targets do); evaluation inputs unchanged."""
        split = data.split
        order_of_row = time_order_of_rows([split.train, split.valid, split.test])
        seen = pd.concat([split.train, split.valid], ignore_index=True)
        refit_train = TrainingSequences(seen, order_of_row, self.evaluator.history_length + 1,
                                        data.data.rating_scale or FIVE_STARS)
        return replace(data, train=refit_train)

    def fit_teacher(self, ctx: TransferContext, key: str) -> tuple[nn.Module, dict]:
        if self.cfg.transfer.mode != "none":
            return transferred_teacher(ctx, key)
        return super().fit_teacher(ctx, key)

    def extract(self, teacher: nn.Module, teacher_key: str, needs: frozenset[str], data: RatingData, path: Path
                ) -> TeacherKnowledge:
        meta = {"rows": len(data.train), "split_key": data.split_key}
        return load_or_extract(path, teacher_key, needs, meta, lambda: per_example_knowledge(
            teacher, data.train, needs, self.cfg.trainer.eval_batch_size, self.device))

    def evaluate(self, role: str, model: nn.Module, data: RatingData) -> RoleResult:
        evaluator = self.evaluator
        return evaluate_rating_role(role, model, data.evaluation, data.windows, self.cfg.trainer.eval_batch_size,
                                    evaluator.latency_batch_size, evaluator.latency_repeats,
                                    evaluator.latency_warmup, self.device)

    def baselines(self, data: RatingData) -> dict[str, tuple[nn.Module, dict]]:
        """Mean-rating baselines fitted on every rating a model may learn from (training split plus
        the split's source data)."""
        extra = data.split.extra
        known = pd.concat([data.split.train, *([extra["source"]] if "source" in extra else [])])
        baselines: dict[str, tuple[nn.Module, dict]] = {}
        for name in self.cfg.baselines:
            model = build_model({"name": "mean_rating", "by": RATING_BASELINES[name]}, data.shape)
            model.fit_ratings(known)
            baselines[name] = (model, {"training": {"fitted_by": "counting", "ratings": len(known)}})
        return baselines

    def protocol(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "split": asdict(self.split),
            "input_history": self.evaluator.input_history,
            "visible_splits": {"train": "earlier train", "valid": "train", "test": "train + valid"},
            "history_length": self.evaluator.history_length,
            "accuracy": "argmax class == true rating",
            "mae_rmse": "on the expected rating (probability-weighted class values) or the model's point estimate",
            "model_selection": self.model_selection(),
        }
