"""`recdistill compare PATH...`: gather every metrics.json below the paths into one table.

Runs are grouped by (experiment, distill, role); each cell is mean ± std over the group's runs
(seeds), with n. The best mean per metric column is bold.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from recdistill.errors import RecdistillError
from recdistill.reporting.results import ROLE_ORDER

log = logging.getLogger(__name__)

#: Metrics shown by default, with whether higher is better.
DEFAULT_METRICS = {"accuracy": True, "mae": False, "rmse": False}


def find_metrics(paths: list[Path]) -> list[Path]:
    """Every metrics.json at or below each path (a file path is taken as is)."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise RecdistillError(f"compare: {path} does not exist")
        found.extend([path] if path.is_file() else sorted(path.rglob("metrics.json")))
    return found


def load_runs(files: list[Path], split: str = "test") -> pd.DataFrame:
    """One row per (run, role): run info columns plus the role's `split` metrics and params."""
    rows = []
    for file in files:
        try:
            metrics = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as error:
            log.warning("skipping %s: %s", file, error)
            continue
        info = metrics["run"]
        for role in ROLE_ORDER:
            if role in metrics:
                rows.append({"run": str(file.parent), "experiment": info["experiment"], "distill": info["distill"],
                             "seed": info["seed"], "role": role, **metrics[role][split],
                             "params": metrics[role]["efficiency"]["params"]})
    return pd.DataFrame(rows)


def aggregate(runs: pd.DataFrame, metrics: list[str], by: tuple[str, ...] = ("experiment", "distill", "role")
              ) -> pd.DataFrame:
    """Mean, std and n of each metric per group."""
    grouped = runs.groupby(list(by), sort=False)[metrics]
    table = grouped.agg(["mean", "std", "count"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    return table.reset_index()


def render(summary: pd.DataFrame, metrics: list[str], by: tuple[str, ...], console: Console | None = None) -> None:
    """Print the aggregated table with the best mean per metric in bold."""
    table = Table(title="recdistill compare (mean ± std over runs)")
    for key in by:
        table.add_column(key)
    for metric in metrics:
        table.add_column(metric, justify="right")
    table.add_column("n", justify="right")
    best = {m: (summary[f"{m}_mean"].max() if DEFAULT_METRICS.get(m, True) else summary[f"{m}_mean"].min())
            for m in metrics}
    for _, row in summary.iterrows():
        cells = []
        for metric in metrics:
            mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
            text = f"{mean:.4f}" + ("" if pd.isna(std) else f" ± {std:.4f}")
            cells.append(f"[bold]{text}[/bold]" if mean == best[metric] else text)
        table.add_row(*[str(row[k]) for k in by], *cells, str(int(row[f"{metrics[0]}_count"])))
    (console or Console()).print(table)


def compare_main(args: list[str]) -> None:
    """Parse `compare` arguments, load, aggregate and print."""
    parser = argparse.ArgumentParser(prog="recdistill compare")
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, sweep folders or metrics.json files")
    parser.add_argument("--metric", action="append", help="metric column(s) to show (default accuracy, mae, rmse)")
    parser.add_argument("--split", default="test", choices=["valid", "test"])
    options = parser.parse_args(args)
    files = find_metrics(options.paths)
    if not files:
        raise RecdistillError(f"compare: no metrics.json below {[str(p) for p in options.paths]}")
    runs = load_runs(files, options.split)
    metrics = options.metric or list(DEFAULT_METRICS)
    unknown = [m for m in metrics if m not in runs.columns]
    if unknown:
        raise RecdistillError(f"compare: unknown metric(s) {unknown}; valid: {sorted(set(runs.columns) - {'run', 'experiment', 'distill', 'seed', 'role'})}")
    by = ("experiment", "distill", "role")
    render(aggregate(runs, metrics, by), metrics, by)
