"""`DistillationObjective`: the student's own loss plus weighted distillation terms, by name.

The same objective trains with or without a teacher: with no strategies it is just
`base_weight * sum(base terms)`, and `setup` then needs no knowledge at all.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.registry import available_strategies, get_strategy_class
from recdistill.distill.strategy import Strategy
from recdistill.errors import ConfigError
from recdistill.models.base import RatingOutput
from recdistill.utils.config_checks import check_values


class DistillationObjective(nn.Module):
    """`loss = base_weight * sum(base terms) + sum_i weight_i * strategy_i.loss(...)`.

    Strategies live in an `nn.ModuleDict`, so their learnable parts (created in `setup`) show up
    in `.parameters()`; build the optimiser over model and objective after `setup`.
    """

    def __init__(
        self, base_weight: float = 1.0, terms: Mapping[str, tuple[float, Strategy]] | None = None
    ) -> None:
        super().__init__()
        terms = dict(terms or {})
        assert "loss" not in terms, "a distillation term may not be named 'loss' (it is the total)"
        self.base_weight = float(base_weight)
        self.weights: dict[str, float] = {name: float(weight) for name, (weight, _) in terms.items()}
        self.strategies = nn.ModuleDict({name: strategy for name, (_, strategy) in terms.items()})
        self._base_names: tuple[str, ...] = ()

    @property
    def needs(self) -> frozenset[str]:
        """Every knowledge kind some strategy needs (empty without strategies)."""
        return frozenset().union(*(strategy.needs for strategy in self.strategies.values()))

    def setup(self, knowledge: TeacherKnowledge | None, student_hidden_dim: int) -> None:
        """Hand the teacher knowledge to every strategy; None is fine when nothing is needed."""
        if knowledge is None:
            assert not self.needs, f"distillation needs teacher knowledge {sorted(self.needs)}, got None"
            return
        for strategy in self.strategies.values():
            strategy.setup(knowledge, student_hidden_dim)

    def on_epoch_start(self, epoch: int) -> None:
        """Forward the per-epoch hook to every strategy."""
        for strategy in self.strategies.values():
            strategy.on_epoch_start(epoch)

    def forward(
        self,
        base_terms: Mapping[str, torch.Tensor],
        student_output: RatingOutput,
        batch: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Every unweighted term by name, plus the weighted total under "loss"."""
        clash = set(base_terms) & (set(self.strategies) | {"loss"})
        assert not clash, f"base loss terms {sorted(clash)} clash with distillation term names"
        self._base_names = tuple(base_terms)
        terms: dict[str, torch.Tensor] = dict(base_terms)
        weighted: list[torch.Tensor] = []
        if self.base_weight != 0 and base_terms:
            weighted.append(self.base_weight * sum(base_terms.values()))
        for name, strategy in self.strategies.items():
            terms[name] = strategy.loss(student_output, batch)
            if self.weights[name] != 0:
                weighted.append(self.weights[name] * terms[name])
        assert weighted, "the objective has no term with non-zero weight"
        terms["loss"] = sum(weighted[1:], weighted[0])
        return terms

    def formula(self, base_names: typing.Sequence[str] | None = None) -> str:
        """The total as text, e.g. `loss = 0.5 * ce + 0.5 * soft`.

        Base term names are those given, else those seen in the last `forward`, else "base".
        """
        names = tuple(base_names) if base_names is not None else self._base_names or ("base",)
        base = names[0] if len(names) == 1 else "(" + " + ".join(names) + ")"
        parts = [f"{self.base_weight!r} * {base}"] if self.base_weight != 0 else []
        parts += [f"{weight!r} * {name}" for name, weight in self.weights.items() if weight != 0]
        return "loss = " + (" + ".join(parts) if parts else "0")

    def extra_repr(self) -> str:
        return self.formula()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_param(strategy: str, key: str, value: Any, annotation: Any) -> Any:
    """Return `value` coerced to the field's type, or raise ConfigError naming the key."""
    if annotation is float and _is_number(value):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation in (bool, str) and isinstance(value, annotation):
        return value
    if annotation not in (float, int, bool, str):
        return value  # richer types are left to the strategy's own checks
    raise ConfigError(
        f"distill.terms.{strategy}.{key} must be {annotation.__name__}, got {value!r} "
        f"({type(value).__name__})"
    )


def _check_weight(key: str, weight: Any) -> None:
    """ConfigError unless `weight` is a finite number >= 0."""
    if not _is_number(weight) or weight < 0:
        raise ConfigError(f"{key} must be a number >= 0, got {weight!r}")
    if not math.isfinite(weight):
        raise ConfigError(f"{key}={weight!r} must be a finite number >= 0")


def strategy_params(name: str, settings: Mapping[str, Any], task: str | None = None) -> tuple[float, Any]:
    """Parse and check one `terms` entry into (weight, the strategy's Params); Params is None when weight is 0.

    Keys, types and the domains declared on the Params are checked (ConfigError naming
    `distill.terms.<name>.<key>`); with `task` given, a strategy written for another task's model
    outputs is a ConfigError."""
    cls = get_strategy_class(name)
    if task is not None and cls.task != task:
        valid = sorted(n for n, c in available_strategies().items() if c.task == task)
        raise ConfigError(f"distillation strategy {name!r} works on the {cls.task} task, not {task}; "
                          f"valid for {task}: {valid}")
    hints = typing.get_type_hints(cls.Params)
    fields = {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls.Params)}
    valid = ["weight", *fields]
    unknown = [key for key in settings if key not in valid]
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in distill.terms.{name}; valid: {valid}")
    if "weight" not in settings:
        raise ConfigError(f"distill.terms.{name} needs a 'weight'; valid keys: {valid}")
    weight = settings["weight"]
    _check_weight(f"distill.terms.{name}.weight", weight)
    if weight == 0:
        return 0.0, None
    values = {key: _check_param(name, key, settings[key], fields[key]) for key in fields if key in settings}
    params = cls.Params(**values)
    check_values(params, f"distill.terms.{name}.")
    return float(weight), params


def build_strategy(name: str, settings: Mapping[str, Any], task: str | None = None
                   ) -> tuple[float, Strategy | None]:
    """Parse one `terms` entry into (weight, strategy); the strategy is None when weight is 0.

    With `task` given, a strategy written for another task's model outputs is a ConfigError."""
    weight, params = strategy_params(name, settings, task)
    return weight, None if params is None else get_strategy_class(name)(params)


def check_distill_config(cfg: Any, task: str | None = None) -> dict[str, tuple[float, Any]]:
    """Check a `DistillConfig` (dataclass or Hydra DictConfig) without building anything: the base
    weight, every term's keys, types and value domains; returns name -> (weight, Params) of the
    terms with a weight > 0."""
    _check_weight("distill.base_weight", cfg.base_weight)
    terms: dict[str, tuple[float, Any]] = {}
    for name, settings in (cfg.terms or {}).items():
        if not isinstance(settings, Mapping):
            raise ConfigError(
                f"distill.terms.{name} must be a mapping with 'weight' and params, got {settings!r}; "
                f"valid strategies: {sorted(available_strategies())}"
            )
        weight, params = strategy_params(str(name), settings, task)
        if params is not None:
            terms[str(name)] = (weight, params)
    if cfg.base_weight == 0 and not terms:
        raise ConfigError(f"distill {cfg.name!r}: base_weight is 0 and no term has a weight > 0")
    return terms


def build_objective(cfg: Any, task: str | None = None) -> DistillationObjective:
    """Build the objective from a `DistillConfig` (dataclass or Hydra DictConfig); with `task`, every
    strategy must work on that task."""
    terms = check_distill_config(cfg, task)
    strategies = {name: (weight, get_strategy_class(name)(params)) for name, (weight, params) in terms.items()}
    return DistillationObjective(float(cfg.base_weight), strategies)
