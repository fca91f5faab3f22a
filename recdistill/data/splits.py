"""Train / valid / test splits of the interaction table, keyed and cached on disk.

Per-user counts for `chrono_ratio` (ratios r_train, r_valid, r_test over a user's n interactions,
rounded half up):
    users with n < 3 put everything in train;
    n_test  = clip(round(n * r_test), 1, n - 2)             (0 when r_test == 0)
    n_valid = clip(round(n * r_valid), 1, n - 1 - n_test)   (0 when r_valid == 0)
    n_train = n - n_valid - n_test                          (so >= 1)
so every user with at least 3 interactions has at least one in each split whose ratio is > 0.
`leave_one_out` is the same with n_test = n_valid = 1. Ties in time keep the original row order.
`cold_user`, `cold_item`, `domain_genre` and `domain_time` live in `cold_splits` and add named extra tables.
`given` reads its parts from three files (`given_split`). Kinds that order interactions by time
(`needs_time`) refuse data without a timestamp column; random_ratio, cold_item and given do not.

Each kind's config is its own dataclass (`split_config`); SPLIT_KINDS maps a kind to its schema,
the function that makes it and what its cache key holds. `make_split` and `split_key` take the
dataclass or anything `to_split_config` converts (a composed `cfg.split`, a mapping).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

from recdistill.data.config import DatasetConfig
from recdistill.data.split_config import (ChronoRatioSplit, ColdItemSplit, ColdUserSplit, DomainGenreSplit,
                                          DomainTimeSplit, GivenSplit, LeaveOneOutSplit, RandomRatioSplit,
                                          to_split_config)
from recdistill.data.cold_splits import make_cold_split
from recdistill.data.given_split import given_parts
from recdistill.data.readers.registry import dataset_config, get_reader
from recdistill.data.split_rules import (PARTS, Split, chrono_ratio_split, leave_one_out_split, random_ratio_split,
                                         with_row)
from recdistill.errors import ConfigError, DataError
from recdistill.utils.atomic import write_json, write_parquet

log = logging.getLogger(__name__)
_EXTRA_NAME = re.compile(r"[a-z][a-z0-9_]*")

SPLIT_VERSION = 2  # layout of a saved split (2: extra tables listed in split.json); 1 still loads
RULES_VERSION = 1  # in every split key: bump when the split rules change so cached splits are not reused


def _fields_key(seeded: bool) -> Callable[[Any, int], dict[str, Any]]:
    """A key function holding the kind and every field of its config (and the seed when `seeded`)."""
    def key(cfg: Any, seed: int) -> dict[str, Any]:
        determined = {"split": cfg.name, **{f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "name"}}
        return {**determined, "seed": int(seed)} if seeded else determined
    return key


def _domain_key(cfg: DomainGenreSplit | DomainTimeSplit, seed: int) -> dict[str, Any]:
    """Written as when `domain` was one kind with a `domain_by` switch, so those cached splits stay valid."""
    determined: dict[str, Any] = {"split": "domain", "ratios": list(cfg.ratios), "target_fraction": cfg.target_fraction}
    if isinstance(cfg, DomainGenreSplit):
        determined.update(domain_by="genre", target_genres=sorted(set(cfg.target_genres)))
    else:
        determined.update(domain_by="time", time_quantile=cfg.time_quantile)
    if cfg.target_fraction < 1:  # a full target train part is not random
        determined["seed"] = int(seed)
    return determined


@dataclass(frozen=True)
class SplitKind:
    """One kind of split: its config schema, the function that makes it, and what its cache key holds."""

    schema: type
    make: Callable[[pd.DataFrame, Any, int, Optional[pd.DataFrame]], Split]  # (rows with `row`, cfg, seed, items)
    key: Callable[[Any, int], dict[str, Any]]  # (cfg, seed) -> what determines the split
    needs_time: bool = True  # orders interactions by time: refuses data without a timestamp column


#: Split kind (`split.name`) -> schema, maker and key.
SPLIT_KINDS: dict[str, SplitKind] = {
    "chrono_ratio": SplitKind(ChronoRatioSplit, chrono_ratio_split, _fields_key(seeded=False)),
    "leave_one_out": SplitKind(LeaveOneOutSplit, leave_one_out_split, _fields_key(seeded=False)),
    "random_ratio": SplitKind(RandomRatioSplit, random_ratio_split, _fields_key(seeded=True), needs_time=False),
    "cold_user": SplitKind(ColdUserSplit, make_cold_split, _fields_key(seeded=True)),
    "cold_item": SplitKind(ColdItemSplit, make_cold_split, _fields_key(seeded=True), needs_time=False),
    "domain_genre": SplitKind(DomainGenreSplit, make_cold_split, _domain_key),
    "domain_time": SplitKind(DomainTimeSplit, make_cold_split, _domain_key),
    # the files' paths; their content enters through the data fingerprint
    "given": SplitKind(GivenSplit, given_parts, _fields_key(seeded=False), needs_time=False),
}


def make_split(interactions: pd.DataFrame, cfg: Any, seed: int, items: pd.DataFrame | None = None) -> Split:
    """Split interactions by the kind of `cfg` (a split dataclass, a composed `cfg.split` or a mapping);
    `items` is needed by `domain_genre`. ConfigError when the kind orders by time and the data has none."""
    split_cfg = to_split_config(cfg)
    kind = SPLIT_KINDS[split_cfg.name]
    if kind.needs_time and "timestamp" not in interactions.columns:
        untimed = ", ".join(f"split={name}" for name, k in SPLIT_KINDS.items() if not k.needs_time)
        raise ConfigError(f"split.name={split_cfg.name!r} orders each user's interactions by time, but the data has "
                          f"no timestamp column (dataset.columns.timestamp unset?); use {untimed}")
    split = kind.make(with_row(interactions), split_cfg, seed, items)
    log.info("Split %s: %s", split_cfg.name, split.sizes())
    return split


def split_key(dataset_cfg: DatasetConfig | Any, split_cfg: Any, seed: int, fingerprint: str | None = None) -> str:
    """16 hex chars of the sha256 of everything that determines the split (split_cfg: as make_split
    takes it), including the content `fingerprint` of the data when it has one (`RecData.fingerprint`)."""
    data, split = asdict(dataset_config(dataset_cfg)), to_split_config(split_cfg)  # defaults filled in
    determined: dict[str, Any] = {"version": RULES_VERSION, "dataset": data["name"],
                                  "data": {k: v for k, v in get_reader(data["name"]).data_key(data, seed).items()
                                           if v is not None},  # an unset option: keys from before it existed
                                  **SPLIT_KINDS[split.name].key(split, seed)}
    if fingerprint is not None:
        determined["fingerprint"] = fingerprint
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
