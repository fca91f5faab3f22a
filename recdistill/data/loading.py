"""Load the dataset a config names through its reader: check it, fix its rating scale, resolve
repeated pairs and filter it (the data report lives in `recdistill.data.report`)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Mapping

from omegaconf import DictConfig

from recdistill.data.config import DatasetConfig
from recdistill.data.duplicates import resolve_duplicates
from recdistill.data.filters import k_core, positive_only
from recdistill.data.rating_scale import RatingScale, check_on_scale, infer_rating_scale, parse_rating_scale
from recdistill.data.readers.registry import dataset_config, get_reader
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def load_dataset(cfg: DatasetConfig | Mapping[str, Any] | DictConfig, seed: int = 0) -> RecData:
    """Read the dataset `cfg.name` names with its reader (seed only matters for generated data),
    check it against the RecData contract, fix its rating scale, resolve repeated pairs, then apply
    the filters (`recdistill.data.filters`: positive_threshold, then the k-core of
    min_user_interactions / min_item_interactions); `report["filters"]` says what they dropped."""
    typed = dataset_config(cfg)
    for key in ("min_user_interactions", "min_item_interactions"):
        if getattr(typed, key) < 0:
            raise ConfigError(f"dataset.{key}={getattr(typed, key)} must be >= 0")
    data = get_reader(typed.name).read(typed, seed)
    data.check()
    data = with_rating_scale(data, parse_rating_scale(typed.rating_scale))
    data = resolve_duplicates(data, typed.duplicates)
    data, positives = positive_only(data, typed.positive_threshold)
    floor = 1 if positives and positives["interactions_dropped"] else 0  # users and items left with none go too
    data, core = k_core(data, max(typed.min_user_interactions, floor), max(typed.min_item_interactions, floor))
    if len(data.interactions) == 0:
        raise DataError(f"dataset {data.name!r}: the filters leave no interaction (positive_threshold="
                        f"{typed.positive_threshold}, min_user_interactions={typed.min_user_interactions}, "
                        f"min_item_interactions={typed.min_item_interactions}); loosen them")
    filters = {"positive_threshold": positives, "k_core": core}
    return replace(data, report={**data.report, "filters": {k: v for k, v in filters.items() if v is not None}})


def with_rating_scale(data: RecData, configured: RatingScale | None) -> RecData:
    """`data` with its rating scale: `configured` (dataset.rating_scale) first, then the reader's,
    else inferred from the ratings; DataError naming the row when a rating is off the scale, and
    ConfigError when a scale is configured for data without ratings."""
    if not data.has_rating:
        if configured is not None:
            raise ConfigError(f"dataset.rating_scale={configured.as_list()} is set, but dataset {data.name!r} has no "
                              "rating column (implicit feedback); remove it or map a rating column")
        return data
    ratings = data.interactions["rating"].to_numpy()
    scale = configured or data.rating_scale or infer_rating_scale(ratings, f"dataset {data.name!r}")
    check_on_scale(ratings, scale, lambda row: f"dataset {data.name!r}, interaction row {row}")
    return replace(data, rating_scale=scale)
