"""The dataset keys every reader shares (each reader's Config extends them; registered with Hydra's ConfigStore)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from recdistill.data.duplicates import DUPLICATE_POLICIES
from recdistill.utils.config_checks import bounded


@dataclass
class DatasetConfig:
    """The keys every dataset has; each reader's Config extends it (recdistill/data/readers/)."""

    name: str = "???"  # the reader (a module of recdistill/data/readers/); "???" is OmegaConf's "must be given"
    cache_dir: str = "~/.cache/recdistill"  # downloads and derived files live here
    min_user_interactions: int = bounded(5, ge=0)  # k-core: users with fewer interactions are dropped
    min_item_interactions: int = bounded(0, ge=0)  # k-core: items with fewer are dropped (iterated with users)
    # ranking on explicit data: only ratings >= this count as interactions (null: every rating counts)
    positive_threshold: Optional[float] = None
    # repeated (user, item) pairs: keep_last (each pair's latest) | keep_all | error (see data/duplicates.py)
    duplicates: str = bounded("keep_last", choices=DUPLICATE_POLICIES)
    # explicit ratings: [low, high, step] (e.g. [0.5, 5, 0.5]); null: the reader's, else inferred from the data
    rating_scale: Optional[list[float]] = None
