"""The metric catalogue: every module of this package that defines `METRIC = Metric(...)` is one metric.

A metric declares its name, task, direction, whether it is cut at K (reported as `name@K`, e.g.
`ndcg@10`) and whether it has one value per user, plus its computation and a hand-computed example.
Evaluation, early stopping, `recdistill compare` and reports read this catalogue; none lists
metrics by hand. Modules are found with pkgutil, so a new metric is one new file.

Contract of `Metric.compute(inputs, k)` (k is None for metrics not cut at K):

    per_user=True   one float64 term per row of `inputs`: (N,) per rating for the rating task,
                    (U,) per user for the ranking task (each user has one list). The value of a
                    set of rows, e.g. one user's or everybody's, is `finish(mean of the terms)`.
    per_user=False  a Python float over all rows together (e.g. catalogue coverage).

Importing this module (and the metric modules) does not import torch: computations use the
methods of the tensors they are given, so `recdistill compare` and `--help` stay fast.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

from recdistill.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

#: This package; the modules discovered are its modules.
PACKAGE = __name__.rpartition(".")[0]


@dataclass
class RatingInputs:
    """What rating metrics read: one row per (user, item) rating, each field (N,) on one device.

    Fields a metric does not read may be None (e.g. `mae(pred, true)` gives only the estimate).
    """

    pred_class: Tensor | None = None  # (N,) int64 predicted rating class (argmax + 1)
    true_class: Tensor | None = None  # (N,) int64 true rating rounded to an integer
    estimate: Tensor | None = None  # (N,) float predicted rating, in rating units
    rating: Tensor | None = None  # (N,) float true rating, in rating units


@dataclass
class RankingInputs:
    """What ranking metrics read, for U users with top-K lists (best first).

    Per-user metrics read `hits` and `n_relevant`; list-level metrics read `topk_items` and
    `n_items`. Quantities several metrics share are computed once per inputs (`memo`).
    """

    hits: Tensor | None = None  # (U, K) bool: list entry i of user u is one of u's ground-truth items
    n_relevant: Tensor | None = None  # (U,) int64 distinct ground-truth items per user, all > 0
    topk_items: Tensor | None = None  # (U, K) int64 item ids, padding -1
    n_items: int | None = None  # catalogue size
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` the first time `key` is asked for, the stored value afterwards."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def hit(self) -> Tensor:
        """(U, K) float64 hit indicators."""
        return self.memo("hit", lambda: self.hits.double())

    @property
    def rank(self) -> Tensor:
        """(K,) float64 1-based ranks 1, 2, ..., K."""
        return self.memo("rank", lambda: self.hit.new_tensor(list(range(1, self.hits.shape[1] + 1))))

    @property
    def n_hits(self) -> Tensor:
        """(U, K) float64 hits among the first i + 1 list entries."""
        return self.memo("n_hits", lambda: self.hit.cumsum(1))


#: Each task a metric can belong to -> the inputs its metrics read.
TASK_INPUTS: dict[str, type] = {"rating": RatingInputs, "ranking": RankingInputs}
#: The tasks a metric can belong to.
TASKS = tuple(TASK_INPUTS)


@dataclass(frozen=True)
class Example:
    """A tiny hand-computed case: `inputs` as plain lists (tensors are made from them in tests),
    the metric's value at cut-off `k`, and for per-user metrics optionally each row's term."""

    inputs: dict[str, Any]
    expected: float
    k: int | None = None
    rows: tuple[float, ...] | None = None


def hit_rows(*patterns: str) -> list[list[bool]]:
    """Hit matrices for examples, one string per user: `hit_rows("0010")` is [[F, F, T, F]]."""
    return [[c == "1" for c in pattern] for pattern in patterns]


def _identity(mean: Tensor) -> Tensor:
    return mean


@dataclass(frozen=True)
class Metric:
    """One metric: metadata plus computation (see the module docstring for `compute`'s contract)."""

    name: str  # lower-case column name, without `@K`
    task: str  # one of TASKS
    higher_is_better: bool  # direction, for early stopping and for the best value in tables
    # (inputs, k) -> per-row float64 terms, or a float when not per_user
    compute: Callable[..., Any] = field(repr=False)
    example: Example = field(repr=False)  # hand-computed case, checked by the contract tests
    at_k: bool = False  # cut at K: reported as `name@K` for every cut-off K of the evaluator
    per_user: bool = True  # one value per user, so runs can be paired user by user
    # mean of the terms (of everybody, or of one user) -> the value; RMSE takes the square root
    finish: Callable[[Tensor], Tensor] = field(default=_identity, repr=False)
    order: int = 100  # position among its task's metrics in results (smaller first)
    headline: int | None = None  # position in compare and report tables by default; None: not shown

    def __post_init__(self) -> None:
        checks = [
            (self.name.isidentifier() and self.name == self.name.lower(),
             "its name must be a lower-case identifier (no '@': K is added by `at_k`)"),
            (self.task in TASKS, f"task {self.task!r} is not one of {list(TASKS)}"),
            (self.per_user or self.finish is _identity, "`finish` needs per-user terms"),
            ((self.example.k is not None) == self.at_k, "its example needs k exactly when the metric is cut at K"),
        ]
        for holds, problem in checks:
            if not holds:
                raise ValueError(f"metric {self.name!r}: {problem}")

    def column(self, k: int | None = None) -> str:
        """The result column: `name@k` for a metric cut at K, else `name`."""
        assert (k is not None) or not self.at_k, f"metric {self.name!r} is cut at K: give k"
        return f"{self.name}@{k}" if self.at_k else self.name

    def form(self) -> str:
        """How its columns are written, for messages: `ndcg@K` or `mae`."""
        return f"{self.name}@K" if self.at_k else self.name

    def terms(self, inputs: Any, k: int | None = None) -> Tensor:
        """Per-row float64 terms of a per-user metric: (N,) for ratings, (U,) for ranking lists."""
        assert self.per_user, f"metric {self.name!r} has no per-user terms"
        return self.compute(inputs, k)

    def value(self, inputs: Any, k: int | None = None) -> float:
        """The metric over all rows of `inputs` (a per-user metric: `finish` of the mean term)."""
        if self.per_user:
            return self.finish(self.terms(inputs, k).mean()).item()
        return float(self.compute(inputs, k))


class Column(NamedTuple):
    """One result column: its name, the metric and the cut-off (None when not cut at K)."""

    name: str
    metric: Metric
    k: int | None


def discover(package: str, path: Sequence[str]) -> dict[str, Metric]:
    """Metric name -> Metric of every module below `path` (package `package`) with a `METRIC`."""
    found: dict[str, Metric] = {}
    where: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda info: info.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        metric = getattr(module, "METRIC", None)
        if metric is None:
            continue
        if not isinstance(metric, Metric):
            raise TypeError(f"{module.__name__}.METRIC must be a Metric, got {type(metric).__name__}")
        if metric.name in found:
            raise ValueError(f"metric {metric.name!r} defined twice: in {where[metric.name]} and {module.__name__}")
        found[metric.name], where[metric.name] = metric, module.__name__
    return found


@cache
def _registry() -> dict[str, Metric]:
    package = importlib.import_module(PACKAGE)
    return discover(PACKAGE, package.__path__)


def all_metrics() -> tuple[Metric, ...]:
    """Every registered metric, by task (in TASKS order), then order, then name."""
    return tuple(sorted(_registry().values(), key=lambda m: (TASKS.index(m.task), m.order, m.name)))


def metrics_for(task: str) -> tuple[Metric, ...]:
    """The metrics of `task`, in the order results report them; ConfigError for an unknown task."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; valid: {list(TASKS)}")
    return tuple(m for m in all_metrics() if m.task == task)


def get_metric(name: str) -> Metric:
    """The metric called `name` (no `@K`), or a ConfigError listing the valid names."""
    registry = _registry()
    if name not in registry:
        raise ConfigError(f"unknown metric {name!r}; valid: {', '.join(m.name for m in all_metrics())}")
    return registry[name]


def valid_forms(task: str | None = None) -> str:
    """The valid column forms, per task, for error messages: `accuracy, mae, rmse (rating); ...`."""
    tasks = TASKS if task is None else (task,)
    parts = [f"{', '.join(m.form() for m in metrics_for(t))} ({t})" for t in tasks]
    return "; ".join(parts) + ", K a positive integer"


def parse_column(column: str) -> tuple[str, int | None]:
    """`ndcg@10` -> ("ndcg", 10), `mae` -> ("mae", None); ConfigError when K is not a positive integer."""
    name, at, k = str(column).partition("@")
    if not at:
        return name, None
    if not (k.isascii() and k.isdigit() and int(k) >= 1):
        raise ConfigError(f"metric column {column!r}: the cut-off after '@' must be a positive integer")
    return name, int(k)


def metric_of(column: str, *, task: str | None = None, source: str | None = None) -> Metric:
    """The metric of a result column (`mae`, `ndcg@10`), of `task` when given; otherwise a
    ConfigError naming the value, `source` (the key it came from, e.g. `trainer.monitor`) and the
    valid forms."""
    try:
        name, k = parse_column(column)
    except ConfigError:
        name, k = "", None
    metric = _registry().get(name)
    if metric is None or metric.at_k != (k is not None) or (task is not None and metric.task != task):
        raise ConfigError(f"unknown metric {column!r}" + (f" ({source})" if source else "")
                          + (f" for the {task} task" if task is not None else "") + f"; valid: {valid_forms(task)}")
    return metric


def is_metric_column(column: str) -> bool:
    """Whether `column` names a registered metric in its right form (`mae`, `ndcg@10`, not `ndcg`)."""
    try:
        metric_of(column)
    except ConfigError:
        return False
    return True


def higher_is_better(column: str, *, task: str | None = None, source: str | None = None) -> bool:
    """Whether a larger value of the metric column is better; ConfigError listing valid forms otherwise."""
    return metric_of(column, task=task, source=source).higher_is_better


def is_per_user(column: str) -> bool:
    """Whether the metric column has one value per user; ConfigError listing valid forms otherwise."""
    return metric_of(column).per_user


def columns_for(task: str, ks: Sequence[int] = ()) -> list[Column]:
    """The task's result columns in report order: per-user metrics (for each k, every metric cut at
    K; then those not cut), then the list-level ones in the same way."""
    metrics = metrics_for(task)
    layout: list[Column] = []
    for per_user in (True, False):
        chosen = [m for m in metrics if m.per_user == per_user]
        layout += [Column(m.column(k), m, k) for k in ks for m in chosen if m.at_k]
        layout += [Column(m.column(), m, None) for m in chosen if not m.at_k]
    return layout


def headline_columns(task: str, k: int) -> list[str]:
    """The task's headline columns (metrics with a `headline` position, in that order) at cut-off k."""
    chosen = sorted((m for m in metrics_for(task) if m.headline is not None), key=lambda m: m.headline)
    return [m.column(k) for m in chosen]
