"""`split=given`: train, valid and test read from three files, as a published split gives them.

    dataset=files split=given split.train=FILE split.valid=FILE split.test=FILE
        dataset.columns.user=NAME dataset.columns.item=NAME [dataset.format=...] [dataset.columns.*=...]

The dataset is the union of the three files: ids are numbered over all of them, so items that
occur only in valid or test stay in the catalogue that full ranking covers. Nothing may alter a
given split: a filter (min_user_interactions, min_item_interactions, positive_threshold) is a
ConfigError, and so is dataset.duplicates=keep_last when a file repeats a (user, item) pair. Pairs
in more than one file are kept, counted, logged and recorded in `report["given_split"]`. Each
part keeps its file's row order. The data fingerprint is over the three files in the order train,
valid, test (and the side files), so editing or swapping a file makes a new split key.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recdistill.data.duplicates import PAIR
from recdistill.data.file_tables import file_format
from recdistill.data.loading import with_rating_scale
from recdistill.data.rating_scale import parse_rating_scale
from recdistill.data.readers.files import Files, read_files
from recdistill.data.readers.registry import dataset_config, get_reader
from recdistill.data.split_config import GivenSplit, to_split_config
from recdistill.data.split_rules import PARTS, Split
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: Dataset options that would drop rows, and the value that leaves the data as it is.
_FILTERS = {"min_user_interactions": 0, "min_item_interactions": 0, "positive_threshold": None}


def load_given(dataset_cfg: Any, split: GivenSplit) -> tuple[RecData, np.ndarray]:
    """(data, part): the union of split.train / valid / test read with dataset=files' options (an unset
    one is <dataset.folder>/<part>.tsv where the dataset has a folder), and the (N,) int8 part of each
    interaction (0 train, 1 valid, 2 test); ConfigError for another dataset, a dataset.path, a
    missing file name or a filter."""
    typed = dataset_config(dataset_cfg)
    if not isinstance(typed, Files.Config):  # dataset=files, or a reader whose Config extends its (citeulike_t)
        raise ConfigError(f"split=given reads split.train / split.valid / split.test with the column mapping of "
                          f"dataset=files, but dataset={typed.name}; set dataset=files (dataset.columns.user=..., "
                          "dataset.columns.item=...)")
    if typed.path is not None:
        raise ConfigError(f"dataset.path={typed.path!r} is set, but split=given reads its data from split.train / "
                          "split.valid / split.test; remove dataset.path")
    for key, neutral in _FILTERS.items():
        value = getattr(typed, key, neutral)
        if value != neutral and value is not None:
            raise ConfigError(f"dataset.{key}={value} would alter a given split (split=given): set "
                              f"dataset.{key}={'null' if neutral is None else neutral}")
    folder = getattr(typed, "folder", None)
    if folder is not None:  # a dataset that keeps its split's files (dataset.folder): unset parts come from there
        split = replace(split, **{name: str(Path(folder).expanduser() / f"{name}.tsv") for name in PARTS
                                  if getattr(split, name) is None})
    missing = [f"split.{name}" for name in PARTS if getattr(split, name) is None]
    if missing:
        raise ConfigError(f"split=given needs {', '.join(missing)}=FILE (the {', '.join(m[6:] for m in missing)} "
                          "interactions)")
    sources = [(Path(getattr(split, name)).expanduser(), name) for name in PARTS]
    check_given = getattr(get_reader(typed.name), "check_given", None)
    if check_given is not None:  # a published split checks its files first (citeulike_t: SHA-256, where to get them)
        check_given(typed, {name: path for path, name in sources})
    for path, name in sources:
        if not path.is_file():
            raise ConfigError(f"split.{name}={str(path)!r}: no such file")
    data = read_files(typed, [(path, file_format(path, typed.format, f"split.{name}")) for path, name in sources])
    part = np.repeat(np.arange(3, dtype=np.int8), data.report["interaction_rows"])  # files in order
    data.check()
    data = with_rating_scale(data, parse_rating_scale(typed.rating_scale))
    summary = _check_repeats(data, part, typed.duplicates)
    report = {"files": {name: str(path) for path, name in sources},
              "rows": {name: int((part == k).sum()) for k, name in enumerate(PARTS)}, **summary}
    log.info("split=given: %s rows; %d items only in valid / test; overlaps %s", report["rows"],
             report["items_not_in_train"], report["overlaps"])
    return replace(data, name=typed.name, report={**data.report, "given_split": report}), part


def load_given_union(dataset_cfg: Any, split_cfg: Any) -> RecData:
    """The union of a given split's three files (`split_cfg`: a config node, mapping or GivenSplit),
    as `recdistill data info` describes it."""
    return load_given(dataset_cfg, to_split_config(split_cfg))[0]


def _check_repeats(data: RecData, part: np.ndarray, policy: str) -> dict[str, Any]:
    """Pairs repeated inside a file (refused unless dataset.duplicates=keep_all) and pairs in more
    than one file (kept, counted and logged); items and users absent from train."""
    inter = data.interactions.assign(part=part)
    inside = inter.duplicated([*PAIR, "part"])
    if inside.any():
        user, item, k = (int(v) for v in inter.loc[inside, [*PAIR, "part"]].iloc[0])
        example = (f"{int(inside.sum())} repeated rows, e.g. user {str(data.user_ids[user])!r}, item "
                   f"{str(data.item_ids[item])!r} in split.{PARTS[k]}")
        if policy == "error":
            raise DataError(f"split=given: a file repeats (user, item) pairs ({example}); "
                            "dataset.duplicates=error")
        if policy != "keep_all":
            raise ConfigError(f"split=given: a file repeats (user, item) pairs ({example}); "
                              f"dataset.duplicates={policy} would drop rows of a given split: set "
                              "dataset.duplicates=keep_all to keep them")
    pairs = {name: pd.MultiIndex.from_frame(inter.loc[part == k, PAIR].drop_duplicates())
             for k, name in enumerate(PARTS)}
    overlaps = {f"{a}_{b}": int(pairs[a].isin(pairs[b]).sum())
                for a, b in (("train", "valid"), ("train", "test"), ("valid", "test"))}
    if any(overlaps.values()):
        log.warning("split=given: (user, item) pairs in more than one file: %s; they are kept (with "
                    "evaluator.mask_history=true the ranking task refuses held-out pairs seen in the input)", overlaps)
    in_train = np.zeros(data.n_items, dtype=bool)
    in_train[inter.loc[part == 0, "item"].to_numpy()] = True
    users_in_train = np.zeros(data.n_users, dtype=bool)
    users_in_train[inter.loc[part == 0, "user"].to_numpy()] = True
    return {"duplicates": {"policy": policy, "repeated_rows_within_files": int(inside.sum())},
            "overlaps": overlaps, "items_not_in_train": int((~in_train).sum()),
            "users_not_in_train": int((~users_in_train).sum())}


def given_parts(frame: pd.DataFrame, cfg: GivenSplit, seed: int, items: Any = None) -> Split:
    """The split whose parts are the rows of `frame` with part 0 / 1 / 2 (the `part` column
    `load_or_make_split` adds from `load_given`), each in file order."""
    if "part" not in frame.columns:
        raise ConfigError("split=given is made from its three files (split.train / split.valid / split.test) by "
                          "load_or_make_split, not by splitting one dataset's interactions")
    part = frame["part"].to_numpy()
    rest = frame.drop(columns=["part"])
    return Split(*(rest[part == k].reset_index(drop=True) for k in range(3)))
