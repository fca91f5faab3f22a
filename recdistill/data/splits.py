"""Train / valid / test splits of the interaction table, keyed and cached on disk.

Per-user counts for `chrono_ratio` (ratios r_train, r_valid, r_test over a user's n interactions,
rounded half up):
    users with n < 3 put everything in train;
    n_test  = clip(round(n * r_test), 1, n - 2)             (0 when r_test == 0)
    n_valid = clip(round(n * r_valid), 1, n - 1 - n_test)   (0 when r_valid == 0)
    n_train = n - n_valid - n_test                          (so >= 1)
so every user with at least 3 interactions has at least one in each split whose ratio is > 0.
`leave_one_out` is the same with n_test = n_valid = 1. Ties in time keep the original row order.
`cold_user`, `cold_item` and `domain` live in `cold_splits` and add named extra tables.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from recdistill.data.config import SPLIT_NAMES, DatasetConfig, SplitConfig
from recdistill.errors import ConfigError, DataError
from recdistill.utils.atomic import write_json, write_parquet

log = logging.getLogger(__name__)

SPLIT_VERSION = 2  # layout of a saved split (2: extra tables listed in split.json); 1 still loads
RULES_VERSION = 1  # in every split key: bump when the split rules change so cached splits are not reused
PARTS = ("train", "valid", "test")
RATIO_SPLITS = ("chrono_ratio", "random_ratio", "domain")  # the splits that read `ratios`
_EXTRA_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass
class Split:
    """Three disjoint interaction tables plus named extras; `row` is each interaction's input position.

    train / valid / test are what the (target) task trains, selects models and is tested on;
    `extra` holds split-specific tables such as a source domain or candidate pools.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Number of rows in each part, then in each extra table."""
        sizes = {name: len(getattr(self, name)) for name in PARTS}
        return {**sizes, **{name: len(table) for name, table in self.extra.items()}}


def with_row(interactions: pd.DataFrame) -> pd.DataFrame:
    """The interactions with a fresh index and a `row` column (the input position, unless already there)."""
    frame = interactions.reset_index(drop=True)
    if "row" not in frame.columns:
        frame = frame.assign(row=np.arange(len(frame), dtype=np.int64))
    return frame


def check_ratios(cfg: SplitConfig) -> np.ndarray:
    """Validated (train, valid, test) ratios."""
    ratios = np.asarray(list(cfg.ratios), dtype=float)
    if ratios.shape != (3,) or (ratios < 0).any() or ratios[0] <= 0 or abs(ratios.sum() - 1) > 1e-6:
        raise ConfigError(f"split.ratios={list(cfg.ratios)} must be three non-negative numbers "
                          "(train > 0) that sum to 1, e.g. [0.8, 0.1, 0.1]")
    return ratios


def _half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(np.int64)


def _per_user_counts(n: np.ndarray, name: str, ratios: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_valid, n_test) for users with n interactions each (see the module docstring)."""
    enough = n >= 3
    if name == "leave_one_out":
        ones = enough.astype(np.int64)
        return ones, ones
    low_test, low_valid = int(ratios[2] > 0), int(ratios[1] > 0)
    n_test = np.clip(_half_up(n * ratios[2]), low_test, np.maximum(n - 2, low_test))
    n_valid = np.clip(_half_up(n * ratios[1]), low_valid, np.maximum(n - 1 - n_test, low_valid))
    return np.where(enough, n_valid, 0), np.where(enough, n_test, 0)


def time_order(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(order, position): rows sorted by user, time, row; each sorted row's 0-based rank in its user's history."""
    user = frame["user"].to_numpy()
    order = np.lexsort((frame["row"].to_numpy(), frame["timestamp"].to_numpy(), user))
    sorted_user = user[order]
    return order, pd.Series(sorted_user).groupby(sorted_user).cumcount().to_numpy()


def chrono_parts(frame: pd.DataFrame, ratios: np.ndarray, name: str = "chrono_ratio") -> np.ndarray:
    """(N,) part of each row (0 train, 1 valid, 2 test) by the per-user rules of the module docstring."""
    part = np.zeros(len(frame), dtype=np.int8)
    if len(frame) == 0:
        return part
    order, position = time_order(frame)
    user = frame["user"].to_numpy()
    n = np.bincount(user)[user[order]]  # (N,) interactions of each sorted row's user
    n_valid, n_test = _per_user_counts(n, name, ratios)
    n_train = n - n_valid - n_test
    part[order] = np.where(position < n_train, 0, np.where(position < n_train + n_valid, 1, 2))
    return part


def make_split(interactions: pd.DataFrame, cfg: SplitConfig, seed: int, items: pd.DataFrame | None = None) -> Split:
    """Split interactions by `cfg.name` (see SPLIT_NAMES); `items` is needed by `domain` with domain_by=genre."""
    if cfg.name not in SPLIT_NAMES:
        raise ConfigError(f"split.name={cfg.name!r} is not one of {', '.join(SPLIT_NAMES)}")
    frame = with_row(interactions)
    if cfg.name in ("cold_user", "cold_item", "domain"):
        from recdistill.data import cold_splits  # imported here: cold_splits builds on this module

        split = cold_splits.make_cold_split(frame, cfg, seed, items)
        log.info("Split %s: %s", cfg.name, split.sizes())
        return split
    ratios = check_ratios(cfg)
    part = np.zeros(len(frame), dtype=np.int8)  # 0 train, 1 valid, 2 test
    if cfg.name == "random_ratio":
        n = len(frame)
        n_test, n_valid = int(_half_up(np.array(n * ratios[2]))), int(_half_up(np.array(n * ratios[1])))
        order = np.random.default_rng(seed).permutation(n)
        part[order[n - n_test - n_valid:n - n_test]] = 1
        part[order[n - n_test:]] = 2
    else:
        part = chrono_parts(frame, ratios, cfg.name)
    split = Split(*(frame[part == k].reset_index(drop=True) for k in range(3)))
    log.info("Split %s: %s", cfg.name, split.sizes())
    return split


def _plain(cfg: Any) -> dict[str, Any]:
    """A config (dataclass, OmegaConf node or mapping) as a plain dict."""
    if is_dataclass(cfg):
        return asdict(cfg)
    if isinstance(cfg, Mapping):
        return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in cfg.items()}
    try:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"cannot read config of type {type(cfg).__name__}") from exc


def _cold_key(split: dict[str, Any], seed: int) -> dict[str, Any]:
    """The fields that determine a cold_user / cold_item / domain split (none of them for other splits)."""
    split = {**asdict(SplitConfig()), **split}  # a plain dict written before these fields existed
    name = split["name"]
    if name == "cold_user":
        keys = {"support_size": int, "max_support": int, "min_query": int, "valid_users": float, "test_users": float}
    elif name == "cold_item":
        keys = {"valid_items": float, "test_items": float, "min_item_interactions": int}
    elif name == "domain":
        keys = {"domain_by": str, "target_fraction": float}
        keys.update({"target_genres": lambda g: sorted({str(x) for x in g})} if split["domain_by"] == "genre"
                    else {"time_quantile": float})
    else:
        return {}
    determined = {key: cast(split[key]) for key, cast in keys.items()}
    if name != "domain" or float(split["target_fraction"]) < 1:  # a full target train part is not random
        determined["seed"] = int(seed)
    return determined


def split_key(dataset_cfg: DatasetConfig, split_cfg: SplitConfig, seed: int) -> str:
    """16 hex chars of the sha256 of everything that determines the split."""
    data, split = _plain(dataset_cfg), _plain(split_cfg)
    determined: dict[str, Any] = {"version": RULES_VERSION, "dataset": data["name"],
                                  "min_user_interactions": data["min_user_interactions"],
                                  "split": split["name"]}
    if data["name"] == "synthetic":
        determined["synthetic"] = data["synthetic"]
    if data.get("source") == "local":
        determined["local_dir"] = str(Path(data["local_dir"] or "").expanduser().resolve())
    if split["name"] in RATIO_SPLITS or split["name"] not in SPLIT_NAMES:
        determined["ratios"] = [float(r) for r in split["ratios"]]
    if split["name"] == "random_ratio" or data["name"] == "synthetic":
        determined["seed"] = int(seed)
    determined.update(_cold_key(split, seed))  # new fields enter only the new splits' keys: old keys stay valid
    canonical = json.dumps(determined, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def save_split(split: Split, directory: Path) -> None:
    """Write train/valid/test and one `<name>.parquet` per extra table, then split.json (the completion marker)."""
    directory = Path(directory)
    for name in split.extra:
        if not _EXTRA_NAME.fullmatch(name) or name in PARTS or name == "split":
            raise DataError(f"extra split table {name!r} needs a lowercase identifier other than "
                            f"{', '.join(PARTS)} and split")
    for name in PARTS:
        write_parquet(directory / f"{name}.parquet", getattr(split, name))
    for name, table in split.extra.items():
        write_parquet(directory / f"{name}.parquet", table)
    write_json(directory / "split.json", {"version": SPLIT_VERSION, "sizes": split.sizes(),
                                          "extras": list(split.extra)})


def load_split(directory: Path) -> Split:
    """Read a split written by save_split; DataError if it is missing or incomplete."""
    directory = Path(directory)
    meta_path = directory / "split.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        parts = [pd.read_parquet(directory / f"{name}.parquet") for name in PARTS]
        extra = {name: pd.read_parquet(directory / f"{name}.parquet") for name in meta.get("extras", [])}
    except (OSError, ValueError) as exc:
        raise DataError(f"{directory}: no complete saved split ({exc})") from exc
    split = Split(*parts, extra=extra)
    if meta.get("sizes") != split.sizes():
        raise DataError(f"{meta_path}: sizes {meta.get('sizes')} do not match the parquet files {split.sizes()}")
    return split
