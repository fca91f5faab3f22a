"""Paired significance tests of a group of runs against a baseline, on per-user test metrics.

Default pairing: every `student_kd` group against the `student` role (trained alone, same budget
and seed) of the same run folders, user by user, the users of all seeds concatenated (pairs are
(run, user)). With `--baseline KEY=VALUE`: every group against the runs whose config has
KEY=VALUE, same role, joined on (seed, user).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from recdistill.errors import RecdistillError
from recdistill.evaluation.metrics import is_metric_column
from recdistill.evaluation.metrics import is_per_user as metric_is_per_user
from recdistill.reporting.runs import MISSING, as_number, label

log = logging.getLogger(__name__)

#: The baseline column's text in default mode.
STUDENT_ALONE = "student (same runs)"


def is_per_user(column: str) -> bool:
    """Whether a result column is a catalogue metric with per-user values (a column of
    per_user.parquet), so runs can be paired on it; coverage and efficiency figures are not."""
    return is_metric_column(column) and metric_is_per_user(column)


def paired_tests(candidate: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Pairs, mean difference (candidate - baseline), paired t-test and Wilcoxon signed-rank p-values.

    All-zero differences give p = 1.0 for both tests (nothing to tell apart); a constant non-zero
    difference gives a t-test p of 0.0 (t is infinite); fewer than two pairs give NaN p-values.
    """
    candidate, baseline = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    assert candidate.shape == baseline.shape, f"unpaired arrays {candidate.shape} vs {baseline.shape}"
    diff = candidate - baseline
    result = {"pairs": float(len(diff)), "diff": float(diff.mean()) if len(diff) else float("nan"),
              "p_ttest": float("nan"), "p_wilcoxon": float("nan")}
    if len(diff) == 0:
        return result
    if np.all(diff == 0):
        result.update(p_ttest=1.0, p_wilcoxon=1.0)
        return result
    if len(diff) < 2:
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns on near-constant differences
        result["p_ttest"] = 0.0 if np.all(diff == diff[0]) else float(stats.ttest_rel(candidate, baseline).pvalue)
        result["p_wilcoxon"] = float(stats.wilcoxon(candidate, baseline, zero_method="wilcox").pvalue)
    return result


class PerUser:
    """Reads each run's per_user.parquet once."""

    def __init__(self) -> None:
        self._tables: dict[str, pd.DataFrame | None] = {}

    def __call__(self, run: str) -> pd.DataFrame | None:
        """The run's per-user test metrics, or None (with a warning) when the file is missing."""
        if run not in self._tables:
            path = Path(run) / "per_user.parquet"
            if path.exists():
                self._tables[run] = pd.read_parquet(path)
            else:
                log.warning("%s not found; the run is left out of the paired tests", path)
                self._tables[run] = None
        return self._tables[run]


def parse_baseline(spec: str, configs: dict[str, dict[str, Any]]) -> tuple[str, str, set[str]]:
    """`KEY=VALUE` -> (key, value, the runs whose config matches)."""
    if "=" not in spec:
        raise RecdistillError(f"compare: --baseline {spec!r} is not KEY=VALUE (e.g. --baseline distill.name=none)")
    key, value = (part.strip() for part in spec.split("=", 1))
    seen = {label(flat.get(key, MISSING)) for flat in configs.values()}
    if all(key not in flat for flat in configs.values()):
        raise RecdistillError(f"compare: --baseline key {key!r} is not in any run's config")
    wanted = as_number(value)

    def matches(text: str) -> bool:
        number = as_number(text)
        return text == value or (wanted is not None and number is not None and number == wanted)

    runs = {run for run, flat in configs.items() if matches(label(flat.get(key, MISSING)))}
    if not runs:
        raise RecdistillError(f"compare: no run has {key}={value}; values found: {sorted(seen)}")
    return key, value, runs


def _student_pairs(runs: tuple[str, ...], metric: str, per_user: PerUser) -> pd.DataFrame:
    """student_kd vs student of the same runs, joined on user, all runs concatenated."""
    parts = []
    for run in runs:
        table = per_user(run)
        if table is None or metric not in table:  # a run of another task has other metrics
            continue
        distilled = table.loc[table["role"] == "student_kd", ["user", metric]]
        alone = table.loc[table["role"] == "student", ["user", metric]]
        parts.append(distilled.merge(alone, on="user", suffixes=("", "_baseline")))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[metric, f"{metric}_baseline"])


def _by_seed_and_user(runs: list[str], role: str, seeds: dict[str, Any], metric: str,
                      per_user: PerUser) -> pd.DataFrame:
    """One side of a baseline pairing: the role's per-user metric, keyed by (seed, user)."""
    parts = []
    for run in runs:
        table = per_user(run)
        if table is not None and metric in table:
            part = table.loc[table["role"] == role, ["user", metric]].copy()
            part["seed"] = seeds[run]
            parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["seed", "user", metric])
    frame = pd.concat(parts, ignore_index=True)
    if frame.duplicated(["seed", "user"]).any():
        log.warning("several runs share a seed among %s; their per-user values are averaged", runs)
        frame = frame.groupby(["seed", "user"], as_index=False)[metric].mean()
    return frame


def _baseline_runs(group: pd.Series, rows: pd.DataFrame, keys: list[str], key: str, runs: set[str]) -> list[str]:
    """The baseline runs of one group: same role; matched on the group keys that vary among them."""
    candidates = rows[(rows["role"] == group["role"]) & rows["run"].isin(runs)]
    for other in keys:
        if other != key and candidates[other].nunique() > 1:
            candidates = candidates[candidates[other] == group[other]]
    return sorted(candidates["run"].unique())


def significance(summary: pd.DataFrame, rows: pd.DataFrame, keys: list[str], metrics: list[str],
                 baseline: str | None, configs: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per summary row: `baseline` and, per testable metric, pairs, diff, p_ttest and p_wilcoxon."""
    tested = [m for m in metrics if is_per_user(m)]
    per_user = PerUser()
    seeds = dict(zip(rows["run"], rows["seed"]))
    parsed = parse_baseline(baseline, configs) if baseline else None
    records = []
    for _, group in summary.iterrows():
        record: dict[str, Any] = {"baseline": ""}
        pairs: dict[str, pd.DataFrame] = {}
        if parsed is None and group["role"] == "student_kd":
            record["baseline"] = STUDENT_ALONE
            pairs = {m: _student_pairs(group["runs"], m, per_user) for m in tested}
        elif parsed is not None:
            key, value, runs = parsed
            reference = _baseline_runs(group, rows, keys, key, runs)
            if set(reference) == set(group["runs"]):
                record["baseline"] = "(baseline)"
            elif reference:
                record["baseline"] = f"{key}={value}"
                for m in tested:
                    mine = _by_seed_and_user(list(group["runs"]), group["role"], seeds, m, per_user)
                    theirs = _by_seed_and_user(reference, group["role"], seeds, m, per_user)
                    pairs[m] = mine.merge(theirs, on=["seed", "user"], suffixes=("", "_baseline"))
        for metric, joined in pairs.items():
            result = paired_tests(joined[metric].to_numpy(float), joined[f"{metric}_baseline"].to_numpy(float))
            record.update({f"{metric}_{name}": number for name, number in result.items()})
        records.append(record)
    columns = ["baseline"] + [f"{m}_{name}" for m in tested for name in ("pairs", "diff", "p_ttest", "p_wilcoxon")]
    return pd.DataFrame(records, index=summary.index).reindex(columns=columns)
