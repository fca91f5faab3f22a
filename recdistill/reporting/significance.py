"""Paired significance tests of a group of runs against a baseline, on per-user test metrics.

Protocol (one summary row = one group of runs, its seeds being repetitions):

* Pairing unit: the user. Seeds are averaged first, so each user counts once whatever the number of
  seeds (concatenating seeds would count a user once per seed: pseudo-replication).
  - Default: every `student_kd` group against the `student` role (trained alone, same budget and seed) of the
    same run folders. Per run, the two roles are joined on user; each side is then averaged per user over the
    group's runs (only the runs holding that user in both roles).
  - `--baseline KEY=VALUE`: every group against the runs whose config has KEY=VALUE, same role. Each side is
    averaged per user over its own runs first, then the sides are joined on user (users on both sides only).
    A row whose cached models (teacher, student alone: same `teacher_key` / `student_key`) are the baseline's
    own is not tested (`(same models)`): the one teacher of a strategy sweep is not compared with itself.
* Tests on the per-user pairs (`pairs` = number of users): paired t-test and Wilcoxon signed-rank (scipy.stats).
* Effect: the mean per-user difference (group - baseline) with a 95% percentile bootstrap interval
  (`bootstrap_ci`: 2,000 resamples of users, fixed seed).
* Multiple comparisons: per metric, the Wilcoxon p-values of every row of the table that has one form the family
  (rows of identical values, p = 1, included: they only make it more conservative); they are adjusted with Holm's
  step-down method (`holm`), which bounds the family-wise error rate.
"""

from __future__ import annotations

import json
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
from recdistill.reporting.runs import MISSING, as_number, label, varying_keys

log = logging.getLogger(__name__)

#: The baseline column's text in default mode.
STUDENT_ALONE = "student (same runs)"
#: The baseline column's text for a row whose models are the baseline's own (not tested).
SAME_MODELS = "(same models)"
#: Bootstrap resamples of the users for the confidence interval of the mean difference.
BOOTSTRAP_RESAMPLES = 2000
#: Resampled values held in memory at once (resamples x users), ~80 MB of float64.
BOOTSTRAP_CELLS = 10_000_000
#: The protocol in one line, for machine-readable output.
PROTOCOL = ("pairs = users, each side averaged per user over its seeds first; paired t-test and Wilcoxon "
            "signed-rank; 95% CI of the mean difference: percentile bootstrap over users "
            f"({BOOTSTRAP_RESAMPLES} resamples, seed 0); p_holm: Wilcoxon p adjusted by Holm (1979) over the "
            "tested rows of each metric in this table")
#: Statistics per metric, in column order: `<metric>_<name>`.
STATISTICS = ("pairs", "diff", "ci_low", "ci_high", "p_ttest", "p_wilcoxon", "p_holm")


def is_per_user(column: str) -> bool:
    """Whether a result column is a catalogue metric with per-user values (a column of
    per_user.parquet), so runs can be paired on it; coverage and efficiency figures are not."""
    return is_metric_column(column) and metric_is_per_user(column)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment (Holm 1979, Scand. J. Statist. 6:65-70) of one family of p-values.

    `p_values`: shape (m,); NaN entries (no test) stay NaN and are not counted in the family. The i-th smallest
    of the k tested values becomes max over j <= i of min(1, (k - j + 1) * p_(j)); rejecting where the result
    is <= alpha keeps the family-wise error rate at alpha. Returns an array of shape (m,).
    """
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p_values, np.nan)
    tested = np.flatnonzero(~np.isnan(p_values))
    order = tested[np.argsort(p_values[tested], kind="stable")]  # (k,) positions, smallest p first
    scaled = (len(order) - np.arange(len(order))) * p_values[order]  # (k,) (k - j + 1) * p_(j), j from 1
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def bootstrap_ci(diff: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `diff` (shape (n,), one difference per user).

    Users are resampled with replacement BOOTSTRAP_RESAMPLES times with a fixed seed (the same table
    every time), vectorised in batches of at most BOOTSTRAP_CELLS values. The percentile method, not
    BCa: BCa's jackknife builds an (n, n - 1) array, too large for tens of thousands of users. Fewer
    than two values give (NaN, NaN); identical values give (value, value).
    """
    diff = np.asarray(diff, dtype=float)
    if len(diff) < 2:
        return float("nan"), float("nan")
    if np.all(diff == diff[0]):
        return float(diff[0]), float(diff[0])
    result = stats.bootstrap((diff,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, vectorized=True,
                             batch=max(1, BOOTSTRAP_CELLS // len(diff)), confidence_level=confidence,
                             method="percentile", rng=np.random.default_rng(0))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_tests(candidate: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Pairs, mean difference (candidate - baseline) with its bootstrap 95% interval (ci_low, ci_high),
    paired t-test and Wilcoxon signed-rank p-values; `candidate` and `baseline` have shape (pairs,).

    All-zero differences give p = 1.0 for both tests (nothing to tell apart); a constant non-zero
    difference gives a t-test p of 0.0 (t is infinite); fewer than two pairs give NaN p-values and interval.
    """
    candidate, baseline = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    assert candidate.shape == baseline.shape, f"unpaired arrays {candidate.shape} vs {baseline.shape}"
    diff = candidate - baseline
    low, high = bootstrap_ci(diff)
    result = {"pairs": float(len(diff)), "diff": float(diff.mean()) if len(diff) else float("nan"),
              "ci_low": low, "ci_high": high, "p_ttest": float("nan"), "p_wilcoxon": float("nan")}
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
    """Reads each run's per_user.parquet and the `run` block of its metrics.json once."""

    def __init__(self) -> None:
        self._tables: dict[str, pd.DataFrame | None] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def __call__(self, run: str) -> pd.DataFrame | None:
        """The run's per-user test metrics, or None (with a warning) when the file is missing.

        Raises RecdistillError naming the file when it is not parquet, lacks the `role` or `user` column, or holds
        a metric column that is not numeric."""
        if run not in self._tables:
            path = Path(run) / "per_user.parquet"
            if path.exists():
                self._tables[run] = _read_per_user(path)
            else:
                log.warning("%s not found; the run is left out of the paired tests", path)
                self._tables[run] = None
        return self._tables[run]

    def _run_info(self, run: str) -> dict[str, Any]:
        if run not in self._info:
            try:
                info = json.loads((Path(run) / "metrics.json").read_text())["run"]
                self._info[run] = info if isinstance(info, dict) else {}
            except (OSError, ValueError, KeyError, TypeError):
                self._info[run] = {}
        return self._info[run]

    def data(self, run: str) -> str:
        """The data the run's users belong to: its split key (metrics.json), "" when not recorded. Users of
        different data (e.g. synthetic data generated per seed) are different units, never averaged together."""
        return str(self._run_info(run).get("split_key") or "")

    def model_key(self, run: str, role: str) -> str | None:
        """The model cache key of a cached role (`teacher`, `student` alone) in the run, None when not recorded:
        runs with the same key hold the very same trained model."""
        key = self._run_info(run).get(f"{role}_key") if role in ("teacher", "student") else None
        return str(key) if key else None


def _read_per_user(path: Path) -> pd.DataFrame:
    """A per_user.parquet file, checked: `role` and `user` columns, numeric metric columns."""
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise RecdistillError(f"compare: {path} is not a readable per-user parquet file: {error}") from None
    missing = [column for column in ("role", "user") if column not in table]
    if missing:
        raise RecdistillError(f"compare: {path} lacks the column(s) {missing}; a per-user file has role, user and "
                              f"one column per metric (columns found: {list(table.columns)})")
    text = [c for c in table.columns if c not in ("role", "user") and not pd.api.types.is_numeric_dtype(table[c])]
    if text:
        raise RecdistillError(f"compare: {path}: column(s) {text} are not numeric; per-user metrics are numbers")
    return table


def parse_baseline(spec: str, configs: dict[str, dict[str, Any]]) -> tuple[str, str, set[str]]:
    """`KEY=VALUE` -> (key, value, the runs whose config matches)."""
    if "=" not in spec:
        raise RecdistillError(f"compare: --baseline {spec!r} is not KEY=VALUE (e.g. --baseline distill.name=none)")
    key, value = (part.strip() for part in spec.split("=", 1))
    seen = {label(flat.get(key, MISSING)) for flat in configs.values()}
    if all(key not in flat for flat in configs.values()):
        raise RecdistillError(f"compare: --baseline key {key!r} is not in any run's config; keys whose value differs "
                              f"between these runs: {varying_keys(configs)}")
    wanted = as_number(value)

    def matches(text: str) -> bool:
        number = as_number(text)
        return text == value or (wanted is not None and number is not None and number == wanted)

    runs = {run for run, flat in configs.items() if matches(label(flat.get(key, MISSING)))}
    if not runs:
        raise RecdistillError(f"compare: no run has {key}={value}; values found: {sorted(seen)}")
    return key, value, runs


def _student_pairs(runs: tuple[str, ...], metric: str, per_user: PerUser) -> pd.DataFrame:
    """student_kd vs student of the same runs: joined on user within each run, then each side averaged per
    user over the runs. Columns data, user, metric, `<metric>_baseline`; one row per user of each data."""
    parts = []
    for run in runs:
        table = per_user(run)
        if table is None or metric not in table:  # a run of another task has other metrics
            continue
        distilled = table.loc[table["role"] == "student_kd", ["user", metric]]
        alone = table.loc[table["role"] == "student", ["user", metric]]
        parts.append(distilled.merge(alone, on="user", suffixes=("", "_baseline")).assign(data=per_user.data(run)))
    if not parts:
        return pd.DataFrame(columns=["data", "user", metric, f"{metric}_baseline"])
    return pd.concat(parts, ignore_index=True).groupby(["data", "user"], as_index=False).mean()


def _user_means(runs: list[str], role: str, metric: str, per_user: PerUser) -> pd.DataFrame:
    """One side of a baseline pairing: the role's per-user metric averaged over the runs (seeds) holding
    that user. Columns data, user, metric; one row per user of each data (`PerUser.data`)."""
    parts = []
    for run in runs:
        table = per_user(run)
        if table is not None and metric in table:
            parts.append(table.loc[table["role"] == role, ["user", metric]].assign(data=per_user.data(run)))
    if not parts:
        return pd.DataFrame(columns=["data", "user", metric])
    return pd.concat(parts, ignore_index=True).groupby(["data", "user"], as_index=False).mean()


def _baseline_runs(group: pd.Series, rows: pd.DataFrame, keys: list[str], key: str, runs: set[str]) -> list[str]:
    """The baseline runs of one group: same role; matched on the group keys that vary among them."""
    candidates = rows[(rows["role"] == group["role"]) & rows["run"].isin(runs)]
    for other in keys:
        if other != key and candidates[other].nunique() > 1:
            candidates = candidates[candidates[other] == group[other]]
    return sorted(candidates["run"].unique())


def _pairs(group: pd.Series, rows: pd.DataFrame, keys: list[str], tested: list[str],
           parsed: tuple[str, str, set[str]] | None, per_user: PerUser) -> tuple[str, dict[str, pd.DataFrame]]:
    """The baseline text of one summary row and, per tested metric, its per-user pairs (none without a baseline)."""
    if parsed is None:
        if group["role"] != "student_kd":
            return "", {}
        return STUDENT_ALONE, {m: _student_pairs(group["runs"], m, per_user) for m in tested}
    key, value, runs = parsed
    reference = _baseline_runs(group, rows, keys, key, runs)
    if set(reference) == set(group["runs"]):
        return "(baseline)", {}
    if not reference:
        return "", {}
    if _same_models(group["runs"], reference, group["role"], per_user):
        return SAME_MODELS, {}
    pairs = {}
    for m in tested:
        mine = _user_means(list(group["runs"]), group["role"], m, per_user)
        theirs = _user_means(reference, group["role"], m, per_user)
        pairs[m] = mine.merge(theirs, on=["data", "user"], suffixes=("", "_baseline"))
    return f"{key}={value}", pairs


def _same_models(runs: tuple[str, ...], reference: list[str], role: str, per_user: PerUser) -> bool:
    """Whether the group's runs and the baseline's hold the very same cached models of `role` (e.g. the one
    teacher of a strategy sweep): identical models are not a comparison, so the row is not tested."""
    mine = {per_user.model_key(run, role) for run in runs}
    theirs = {per_user.model_key(run, role) for run in reference}
    return None not in mine | theirs and mine == theirs


def without_per_user_values(runs: list[str], metrics: list[str], per_user: PerUser) -> list[str]:
    """The per-user metrics among `metrics` that no run's per_user.parquet holds (cut away by
    scripts/keep_results.py, say): they cannot be tested, whatever the pairing."""
    tables = [table for table in map(per_user, runs) if table is not None]
    return [m for m in metrics if is_per_user(m) and not any(m in table for table in tables)]


def significance(summary: pd.DataFrame, rows: pd.DataFrame, keys: list[str], metrics: list[str],
                 baseline: str | None, configs: dict[str, dict[str, Any]],
                 per_user: PerUser | None = None) -> pd.DataFrame:
    """Per summary row: `baseline` and, per testable metric, the columns `<metric>_<s>` for s in STATISTICS
    (pairs = users, diff, ci_low, ci_high, p_ttest, p_wilcoxon, p_holm); NaN where a row is not tested.
    `per_user` shares the per_user.parquet files already read (by `without_per_user_values`, say).

    p_holm adjusts, per metric, the Wilcoxon p-values of all tested rows of this table together (`holm`).
    """
    per_user = per_user or PerUser()
    tested = [m for m in metrics if is_per_user(m)]
    parsed = parse_baseline(baseline, configs) if baseline else None
    records = []
    for _, group in summary.iterrows():
        text, pairs = _pairs(group, rows, keys, tested, parsed, per_user)
        record: dict[str, Any] = {"baseline": text}
        for metric, joined in pairs.items():
            result = paired_tests(joined[metric].to_numpy(float), joined[f"{metric}_baseline"].to_numpy(float))
            record.update({f"{metric}_{name}": number for name, number in result.items()})
        records.append(record)
    columns = ["baseline"] + [f"{m}_{name}" for m in tested for name in STATISTICS]
    frame = pd.DataFrame(records, index=summary.index).reindex(columns=columns)
    for m in tested:
        frame[f"{m}_p_holm"] = holm(frame[f"{m}_p_wilcoxon"].to_numpy(float))
    return frame
