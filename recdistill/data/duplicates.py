"""Repeated (user, item) interactions: re-watching, re-buying. A policy decides what stays
(`dataset.duplicates`), applied right after reading, before any split:

    keep_last  each pair keeps only its latest interaction (by timestamp, else by file order)
    keep_all   every interaction stays (repeat consumption is part of the data)
    error      a repeated pair is a DataError naming how many and an example

Under `keep_all`, a user whose held-out item is also in their input history cannot hit it when the
history is masked from the ranking: the ranking task refuses that combination (`repeat_conflicts`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from recdistill.data.tables import RecData
from recdistill.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DUPLICATE_POLICIES = ("keep_last", "keep_all", "error")
PAIR = ["user", "item"]


def resolve_duplicates(data: RecData, policy: str) -> RecData:
    """`data` under `policy`; `data.report["duplicates"]` says what was found and done.

    Raises ConfigError for an unknown policy and DataError under `error` when a pair repeats."""
    if policy not in DUPLICATE_POLICIES:
        raise ConfigError(f"dataset.duplicates={policy!r} unknown; valid: {', '.join(DUPLICATE_POLICIES)}")
    inter = data.interactions
    repeated = inter.duplicated(PAIR, keep=False)
    extra_rows = int(inter.duplicated(PAIR).sum())
    summary: dict[str, Any] = {"policy": policy, "repeated_pairs": int(inter[repeated].drop_duplicates(PAIR).shape[0]),
                               "extra_rows": extra_rows, "rows_dropped": 0}
    if extra_rows and policy == "error":
        user, item = (int(v) for v in inter.loc[repeated, PAIR].iloc[0])
        raise DataError(f"dataset {data.name!r} repeats {summary['repeated_pairs']} (user, item) pairs in "
                        f"{extra_rows} extra rows (e.g. user {str(data.user_ids[user])!r}, item "
                        f"{str(data.item_ids[item])!r}); set dataset.duplicates=keep_last to keep each pair's "
                        "latest interaction, or keep_all to keep them all")
    if extra_rows and policy == "keep_last":
        order = np.argsort(inter["timestamp"].to_numpy(), kind="stable") if data.has_timestamp else np.arange(len(inter))
        in_time = inter.iloc[order]
        inter = inter.drop(index=in_time.index[in_time.duplicated(PAIR, keep="last")])  # original row order kept
        summary["rows_dropped"] = extra_rows
        log.info("dataset.duplicates=keep_last: dropped %d earlier rows of %d repeated (user, item) pairs",
                 extra_rows, summary["repeated_pairs"])
    return replace(data, interactions=inter.reset_index(drop=True), report={**data.report, "duplicates": summary})


def repeat_conflicts(history: pd.DataFrame, held_out: pd.DataFrame) -> int:
    """Users with a held-out (user, item) pair that also occurs in their input `history`."""
    if held_out.empty or history.empty:
        return 0
    seen = pd.MultiIndex.from_frame(history[PAIR].drop_duplicates())
    pairs = pd.MultiIndex.from_frame(held_out[PAIR])
    return int(held_out.loc[pairs.isin(seen), "user"].nunique())
