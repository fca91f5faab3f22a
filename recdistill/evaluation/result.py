"""`RoleResult`: what evaluating one model role produces, whatever the task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class RoleResult:
    """One role's metrics.json block (model name, valid and test metrics, efficiency; the spine adds
    the training summary), its per-user test metrics (`role`, `user`, one column per per-user
    metric), its per-epoch training history and, for ranking, its test top-K lists."""

    metrics: dict[str, Any]
    per_user: pd.DataFrame
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    topk: pd.DataFrame | None = None
