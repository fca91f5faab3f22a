"""Typed schema of the `distill` config group (a Hydra structured config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

from recdistill.utils.config_checks import bounded


@dataclass
class DistillConfig:
    """Which distillation terms to add to the student's own loss, and their weights.

    Each key of `terms` is a strategy name (see `recdistill.distill.registry`); its value holds
    `weight` (required) plus any fields of that strategy's `Params`, e.g.
    `{"soft": {"weight": 0.5, "temperature": 2.0}}`. No terms means plain training.
    """

    name: str = "none"  # label of this setting in run names and reports
    base_weight: float = bounded(1.0, ge=0)  # weight of the student's own ground-truth loss terms
    terms: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # strategy name -> weight + params
    teacher_topk: int = bounded(100, ge=1)  # ranking: length of each user's teacher top-K list that extraction keeps
