"""Find run folders below some paths, load one row per (run, role), and group runs by their config.

Runs are told apart by the config keys whose values differ between them (`distinguishing_keys`);
seeds are repetitions, and locations and bookkeeping (`IGNORED_KEYS`) never distinguish runs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recdistill.errors import RecdistillError
from recdistill.evaluation.metrics import headline_columns, is_metric_column, metric_of
from recdistill.evaluation.metrics import higher_is_better as metric_higher_is_better

log = logging.getLogger(__name__)

#: Roles in table order; the same as `results.ROLE_ORDER`, not imported from there because that module
#: loads torch (seconds) and `recdistill compare` needs none of it.
ROLE_ORDER = ("teacher", "student", "student_kd", "global_mean", "item_mean", "popularity", "random",
              "oracle_popularity")
#: Last parts of config keys that never distinguish runs: repetitions, locations, bookkeeping.
IGNORED_KEYS = frozenset({"seed", "teacher_seed", "experiment_name", "resume", "cache_dir", "device"})
#: Top-level config groups that never change results (where a run reports: `logger.*`).
IGNORED_GROUPS = frozenset({"logger"})
#: Key endings that name a location (`local_dir`, `output_dir`, `checkpoint_path`).
IGNORED_SUFFIXES = ("dir", "path")
#: Label of a key that a run's config does not have (e.g. `distill.terms.kl.weight` under `distill=none`).
MISSING = "—"
#: Efficiency figures copied into each row next to the split's metrics -> whether higher is better.
#: (Metrics, and their directions, come from the metric catalogue.)
EFFICIENCY = {"params": False, "size_bytes": False, "latency_ms_median": False, "latency_ms_p90": False,
              "throughput_per_s": True}
#: The cut-off at which tables show the headline metrics of a task cut at K (`ndcg@10`).
HEADLINE_K = 10


@dataclass
class Failure:
    """A job that left error.json (or an unreadable metrics.json) instead of results."""

    run: str
    error: str
    message: str


@dataclass
class RunSet:
    """Every loaded run: one row per (run, role), each run's flattened config, and the failed jobs."""

    rows: pd.DataFrame
    configs: dict[str, dict[str, Any]]
    failures: list[Failure]

    @property
    def metrics(self) -> list[str]:
        """The metric columns a row carries (split metrics, then efficiency)."""
        return [c for c in self.rows.columns if c not in ("run", "seed", "role", "model")]


def task_of(columns: list[str] | dict[str, Any]) -> str | None:
    """The task of the first catalogue metric among `columns`, or None when there is none."""
    return next((metric_of(c).task for c in columns if is_metric_column(c)), None)


def headline_metrics(available: list[str] | dict[str, Any]) -> list[str]:
    """The catalogue's headline metrics (at HEADLINE_K) of the task whose metric columns `available`
    holds; the first four non-efficiency columns when none of them is there."""
    task = task_of(available)
    headline = [m for m in headline_columns(task, HEADLINE_K) if m in available] if task else []
    return headline or [m for m in available if m not in EFFICIENCY][:4]


def higher_is_better(column: str) -> bool:
    """Whether a larger value of a result column is better: efficiency figures from EFFICIENCY,
    metrics from the catalogue (ConfigError listing the valid forms for anything else)."""
    if column in EFFICIENCY:
        return EFFICIENCY[column]
    return metric_higher_is_better(column, source="result column")


def ignored(key: str) -> bool:
    """Whether a dotted config key is ignored when telling runs apart."""
    parts = key.split(".")
    return (parts[0] == "hydra" or parts[0] in IGNORED_GROUPS or parts[-1] in IGNORED_KEYS
            or parts[-1].endswith(IGNORED_SUFFIXES))


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists become tuples (or JSON text when they hold containers)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            nested = any(isinstance(v, (dict, list, tuple)) for v in value)
            flat[name] = json.dumps(value, sort_keys=True) if nested else tuple(value)
        else:
            flat[name] = value
    return flat


def label(value: Any) -> str:
    """The text a config value is grouped, shown and matched by."""
    if isinstance(value, tuple):
        return "[" + ", ".join(label(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


def as_number(text: str) -> float | None:
    """A label as a number, or None when it is not one (booleans are not numbers)."""
    if text in ("True", "False"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def find_runs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Every metrics.json at or below the paths, and every error.json of a job without metrics."""
    metrics: dict[Path, None] = {}
    errors: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise RecdistillError(f"compare: {path} does not exist")
        if path.is_file():
            if path.name not in ("metrics.json", "error.json"):
                raise RecdistillError(f"compare: {path} is neither a folder nor a metrics.json/error.json file")
            (metrics if path.name == "metrics.json" else errors)[path] = None
            continue
        metrics.update(dict.fromkeys(sorted(path.rglob("metrics.json"))))
        errors.update(dict.fromkeys(sorted(path.rglob("error.json"))))
    failed = [e for e in errors if not (e.parent / "metrics.json").exists()]
    return list(metrics), failed


def _run_config(file: Path, info: dict[str, Any]) -> dict[str, Any]:
    """The run's resolved config: from metrics.json, else from .hydra/config.yaml, else empty."""
    if isinstance(info.get("config"), dict):
        return info["config"]
    saved = file.parent / ".hydra" / "config.yaml"
    if saved.exists():
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(saved), resolve=False)  # type: ignore[return-value]
    log.warning("%s has no config; it cannot be told apart from other runs by config keys", file)
    return {}


def load_runs(paths: list[Path], split: str = "test") -> RunSet:
    """One row per (run, role): run folder, seed, role, model, the split's metrics and efficiency.

    `split` is `valid`, `test` or `test_without_refit` (the test metrics before `trainer.refit_on_valid`
    retrained on train + valid; RecdistillError for a run that was not refitted)."""
    files, error_files = find_runs(paths)
    failures = []
    for file in error_files:
        try:
            error = json.loads(file.read_text())
            failures.append(Failure(str(file.parent), str(error.get("error", "error")), str(error.get("message", ""))))
        except (OSError, json.JSONDecodeError, AttributeError) as problem:
            failures.append(Failure(str(file.parent), "unreadable error.json", str(problem)))
    if not files:
        raise RecdistillError(f"compare: no metrics.json below {[str(p) for p in paths]}"
                              + (f" ({len(failures)} failed job(s) with error.json)" if failures else ""))
    rows, configs, not_refitted = [], {}, []
    for file in files:
        run = str(file.parent)
        try:
            metrics = json.loads(file.read_text())
            info = metrics["run"]
            configs[run] = flatten(_run_config(file, info))
            for role in ROLE_ORDER:
                if role in metrics:
                    block = metrics[role]
                    if split not in block and split == "test_without_refit":
                        not_refitted.append(run)
                        continue
                    rows.append({"run": run, "seed": info.get("seed"), "role": role, "model": block.get("model"),
                                 **block[split], **{k: block["efficiency"].get(k) for k in EFFICIENCY}})
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as problem:
            failures.append(Failure(run, "unreadable metrics.json", f"{type(problem).__name__}: {problem}"))
            configs.pop(run, None)
            rows = [r for r in rows if r["run"] != run]
    if not_refitted:
        runs = sorted(set(not_refitted))
        raise RecdistillError(f"compare --split test_without_refit: {len(runs)} run(s) were not refitted "
                              f"(trainer.refit_on_valid=true, a rating-task option): {', '.join(runs[:5])}"
                              f"{', ...' if len(runs) > 5 else ''}; use --split test")
    if not rows:
        unreadable = [f for f in failures if f.error == "unreadable metrics.json"]
        raise RecdistillError(f"compare: no readable metrics.json below {[str(p) for p in paths]}"
                              + "".join(f"; {f.run}/metrics.json: {f.message}" for f in unreadable[:3])
                              + ("; ..." if len(unreadable) > 3 else ""))
    repeats = repeated_runs(configs)
    if repeats:
        log.warning("compare: %d run(s) repeat the config and seed of another run and are left out, so that no "
                    "seed counts twice: %s", len(repeats), ", ".join(sorted(repeats)))
        rows = [row for row in rows if row["run"] not in repeats]
        configs = {run: config for run, config in configs.items() if run not in repeats}
    return RunSet(pd.DataFrame(rows), configs, failures)


def repeated_runs(configs: dict[str, dict[str, Any]]) -> set[str]:
    """Runs whose config (keys that tell runs apart, seed included) equals that of a run earlier in
    path order, e.g. a sweep job run again under differently spelt overrides."""
    seen: set[str] = set()
    repeats = set()
    for run in sorted(configs):
        kept = {k: v for k, v in configs[run].items() if not ignored(k)}
        identity = json.dumps([kept, configs[run].get("seed"), configs[run].get("teacher_seed")], sort_keys=True,
                              default=str)
        if identity in seen:
            repeats.add(run)
        seen.add(identity)
    return repeats


def _priority(key: str) -> tuple[bool, int, str]:
    """Which of two keys to show when one determines the other: `*.name` first, then shallower keys."""
    return (not key.endswith(".name") and key != "name", key.count("."), key)


def varying_keys(configs: dict[str, dict[str, Any]]) -> list[str]:
    """Config keys (not ignored) whose value differs between runs; a missing key counts as a value."""
    keys = sorted({k for flat in configs.values() for k in flat if not ignored(k)}, key=_priority)
    return [k for k in keys if len({label(flat.get(k, MISSING)) for flat in configs.values()}) > 1]


def distinguishing_keys(configs: dict[str, dict[str, Any]]) -> list[str]:
    """The varying keys, less those whose value follows from keys already kept (same partition of runs).

    `distill=soft` vs `distill=kl` changes distill.name, base_weight and every term key; all but
    distill.name follow from it, so runs are grouped and labelled by distill.name alone.
    """
    kept: list[str] = []
    for key in varying_keys(configs):
        seen: dict[tuple[str, ...], set[str]] = {}
        for flat in configs.values():
            known = tuple(label(flat.get(k, MISSING)) for k in kept)
            seen.setdefault(known, set()).add(label(flat.get(key, MISSING)))
        if any(len(values) > 1 for values in seen.values()):
            kept.append(key)
    return kept


def group_keys(runs: RunSet, by: list[str] | None) -> list[str]:
    """The keys to group by: `by` (checked against the configs) or the distinguishing keys."""
    if not by:
        return distinguishing_keys(runs.configs)
    known = {k for flat in runs.configs.values() for k in flat}
    unknown = [k for k in by if k not in known]
    if unknown:
        raise RecdistillError(f"compare: --by key(s) {unknown} not in any run's config; keys that differ between "
                              f"these runs: {varying_keys(runs.configs) or 'none'}")
    return list(dict.fromkeys(by))


def with_group_columns(runs: RunSet, keys: list[str]) -> pd.DataFrame:
    """The rows plus one text column per group key (the run's value, or MISSING)."""
    rows = runs.rows.copy()
    for key in keys:
        rows[key] = [label(runs.configs[run].get(key, MISSING)) for run in rows["run"]]
    return rows


def _sort_key(text: str) -> tuple[int, float, str]:
    number = as_number(text)
    return (2, 0.0, "") if text == MISSING else (0, number, "") if number is not None else (1, 0.0, text)


def aggregate(rows: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Per group (keys + role): n runs, their seeds and folders, mean and std over runs of each metric."""
    figures = list(dict.fromkeys([*metrics, "params", "latency_ms_median"]))
    records = []
    for values, group in rows.groupby([*keys, "role"], sort=False, dropna=False):
        record: dict[str, Any] = dict(zip([*keys, "role"], values))
        record["n"] = group["run"].nunique()
        record["seeds"] = tuple(sorted(group["seed"].dropna().unique().tolist()))
        record["runs"] = tuple(sorted(group["run"].unique()))
        for metric in figures:
            column = pd.to_numeric(group[metric], errors="coerce")
            record[f"{metric}_mean"] = column.mean()
            record[f"{metric}_std"] = column.std(ddof=1)  # NaN for a single run
        records.append(record)
    summary = pd.DataFrame(records)
    order = sorted(range(len(summary)), key=lambda i: (
        *[_sort_key(summary.at[i, k]) for k in keys], ROLE_ORDER.index(summary.at[i, "role"])))
    return summary.iloc[order].reset_index(drop=True)
