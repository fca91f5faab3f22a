"""`recdistill compare PATH...`: one table over every run found below the paths.

Runs are grouped by the config keys that differ between them (or `--by KEY`) plus role; seeds are
repetitions. Each cell is mean ± std over a group's runs, the best mean per column in bold; `n` counts the
runs (student seeds) and `teacher seeds` the distinct teachers among them (one teacher is one teacher, however
many students it taught). Then paired tests on per-user test metrics against a baseline, users as the pairing
unit after averaging over seeds: Δ with a bootstrap 95% interval, t-test, Wilcoxon and Holm-adjusted Wilcoxon
p-values, the family being the tested rows of one metric in this table (see `significance`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from recdistill.errors import RecdistillError
from recdistill.evaluation.metrics import TASKS, headline_columns
from recdistill.reporting.plots import comparison_figure, save_figure
from recdistill.reporting.run_report import markdown_table
from recdistill.reporting.runs import (HEADLINE_K, Failure, aggregate, group_keys, headline_metrics,
                                       higher_is_better, load_runs, with_group_columns)
from recdistill.reporting.significance import (PROTOCOL, STUDENT_ALONE, PerUser, is_per_user, significance,
                                               without_per_user_values)

#: Metrics shown when no --metric is given: each task's headline metrics in the metric catalogue.
DEFAULT_METRICS = "; ".join(f"{', '.join(headline_columns(task, HEADLINE_K))} for {task}" for task in TASKS)
#: Efficiency columns always shown: (summary column prefix, header).
COST_COLUMNS = [("params", "params"), ("latency_ms_median", "latency ms")]
FORMATS = ("table", "csv", "markdown", "json")


def parse_args(args: list[str]) -> argparse.Namespace:
    """The `compare` command line."""
    parser = argparse.ArgumentParser(prog="recdistill compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, sweep folders or metrics.json files")
    parser.add_argument("--by", action="append", metavar="KEY",
                        help="dotted config key to group by, repeatable (default: the keys that differ)")
    parser.add_argument("--metric", action="append", metavar="M",
                        help=f"metric to show, repeatable (default {DEFAULT_METRICS})")
    parser.add_argument("--split", default="test", choices=["valid", "test", "test_without_refit"],
                        help="split of the metrics (default test; test_without_refit: before a run's refit on train + "
                             "valid; paired tests always use per-user test metrics)")
    parser.add_argument("--baseline", metavar="KEY=VALUE",
                        help="pair each group with the runs having KEY=VALUE on user, each side averaged over its "
                             "seeds first "
                             "(default: student_kd against the student trained alone in the same runs)")
    parser.add_argument("--format", default="table", choices=FORMATS, help="output format (default table)")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="write the accuracy-cost frontier figure")
    return parser.parse_args(args)


def _number(value: Any, spec: str) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _spec(metric: str) -> str:
    """Number format of a metric: counts and bytes as integers, times with two decimals, rates with four."""
    return ",.0f" if metric in ("params", "size_bytes", "throughput_per_s") else ".2f" if "latency" in metric else ".4f"


def _mean_std(row: pd.Series, metric: str) -> str:
    spec = _spec(metric)
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    return _number(mean, spec) + ("" if pd.isna(std) else f" ± {_number(std, spec)}")


def _best(summary: pd.DataFrame, metric: str) -> float:
    column = summary[f"{metric}_mean"]
    return column.max() if higher_is_better(metric) else column.min()


def _is_best(value: float, best: float) -> bool:
    """Equal to the best mean up to float noise (means of the same numbers summed in another order)."""
    return bool(pd.notna(value) and math.isclose(value, best, rel_tol=1e-9, abs_tol=1e-12))


def _tested(summary: pd.DataFrame, metrics: list[str]) -> list[str]:
    return [m for m in metrics
            if is_per_user(m) and f"{m}_pairs" in summary and summary[f"{m}_pairs"].notna().any()]


def _count(value: Any) -> str:
    return "" if value is None or pd.isna(value) else str(int(value))


def _ci(row: pd.Series, metric: str) -> str:
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    return "" if pd.isna(low) else f"[{_number(low, '+.4f')}, {_number(high, '+.4f')}]"


def _test_cells(row: pd.Series, metric: str) -> list[str]:
    """pairs (users), Δ mean, 95% CI, p t-test, p Wilcoxon, p Holm of one row and metric."""
    return [_count(row[f"{metric}_pairs"]), _number(row[f"{metric}_diff"], "+.4f"), _ci(row, metric),
            *(_number(row[f"{metric}_{p}"], ".3g") for p in ("p_ttest", "p_wilcoxon", "p_holm"))]


def _family(summary: pd.DataFrame, metric: str) -> int:
    """How many rows the Holm adjustment of a metric's Wilcoxon p-values covers."""
    return int(summary[f"{metric}_p_wilcoxon"].notna().sum())


def teacher_seeds(summary: pd.DataFrame, configs: dict[str, dict[str, Any]]) -> list[int | None]:
    """Per summary row, the number of distinct teachers among its runs: their teacher keys (metrics.json
    `run.teacher_key`: one per model, data and seed), else their `teacher_seed` values (None when neither is
    recorded). 3 student seeds trained from 1 teacher are 3 runs but 1 teacher; on data generated per seed
    (synthetic) each seed has its own teacher."""
    counts: list[int | None] = []
    for runs in summary["runs"]:
        keys = {_teacher_key(run) for run in runs} - {None}
        stated = {configs[run]["teacher_seed"] for run in runs if configs[run].get("teacher_seed") is not None}
        counts.append(len(keys) if keys else len(stated) if stated else None)
    return counts


def _teacher_key(run: str) -> str | None:
    try:
        return json.loads((Path(run) / "metrics.json").read_text())["run"].get("teacher_key")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _console(table: Table, stderr: bool = False) -> Console:
    """A console wide enough for the table when output is not a terminal (no squeezed cells in files)."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(stderr=stderr, width=max(console.width, needed))
    return console


def render_table(summary: pd.DataFrame, keys: list[str], metrics: list[str], split: str, notes: list[str]) -> None:
    """Rich tables: mean ± std per group (best in bold), then the paired tests, then `notes`."""
    table = Table(title=f"recdistill compare — {split} metrics, mean ± std over the n runs (student seeds)")
    for header in [*keys, "role"]:
        table.add_column(header, no_wrap=True)
    figures = [(m, m, _spec(m)) for m in metrics] + [(c, h, _spec(c)) for c, h in COST_COLUMNS if c not in metrics]
    for _, header, _ in figures:
        table.add_column(header, justify="right")
    table.add_column("n", justify="right")
    table.add_column("teacher seeds", justify="right")
    best = {metric: _best(summary, metric) for metric, _, _ in figures}
    for _, row in summary.iterrows():
        cells = []
        for metric, _, spec in figures:
            text = _mean_std(row, metric) if metric in metrics else _number(row[f"{metric}_mean"], spec)
            cells.append(f"[bold]{text}[/bold]" if _is_best(row[f"{metric}_mean"], best[metric]) else text)
        table.add_row(*[str(row[k]) for k in [*keys, "role"]], *cells, str(row["n"]), _count(row["teacher_seeds"]))
    _console(table).print(table)
    tested = _tested(summary, metrics)
    if tested:
        render_tests(summary, keys, tested)
    for note in notes:
        Console().print(note, markup=False, highlight=False, soft_wrap=True)


def render_tests(summary: pd.DataFrame, keys: list[str], tested: list[str]) -> None:
    """The paired tests of the `tested` metrics, one row per tested group and metric."""
    families = ", ".join(f"{_family(summary, m)} {m}" for m in tested)
    tests = Table(title="paired tests on per-user test metrics: each side averaged over its seeds per user, "
                        "pairs = users, Δ = group − baseline",
                  caption=f"95% CI: percentile bootstrap over users; p Holm: Wilcoxon p adjusted (Holm 1979) over "
                          f"the rows of each metric in this table ({families})")
    for header in [*keys, "role", "baseline", "metric"]:
        tests.add_column(header, no_wrap=True)
    for header in ("pairs (users)", "Δ mean", "95% CI", "p t-test", "p Wilcoxon", "p Holm"):
        tests.add_column(header, justify="right")
    for _, row in summary.iterrows():
        for metric in tested:
            if pd.notna(row[f"{metric}_pairs"]):
                tests.add_row(*[str(row[k]) for k in [*keys, "role", "baseline"]], metric, *_test_cells(row, metric))
    _console(tests).print(tests)


def render_markdown(summary: pd.DataFrame, keys: list[str], metrics: list[str], split: str, notes: list[str]) -> str:
    """A line naming the split, then one markdown table: mean ± std (best in bold), costs, n and teacher seeds, and
    the paired tests (the Holm header names its family: the rows of that metric in this table with a Wilcoxon p);
    then `notes`."""
    tested = _tested(summary, metrics)
    costs = [(c, h) for c, h in COST_COLUMNS if c not in metrics]
    headers = [*keys, "role", *metrics, *(h for _, h in costs), "n", "teacher seeds"]
    if tested:
        headers.append("baseline")
        for m in tested:
            headers += [f"{name} {m}" for name in ("pairs (users)", "Δ", "95% CI", "p t-test", "p Wilcoxon")]
            headers.append(f"p Holm {m} (family of {_family(summary, m)})")
    best = {metric: _best(summary, metric) for metric in [*metrics, *(c for c, _ in costs)]}
    rows = []
    for _, row in summary.iterrows():
        cells = [str(row[k]) for k in [*keys, "role"]]
        for metric in metrics:
            text = _mean_std(row, metric)
            cells.append(f"**{text}**" if _is_best(row[f"{metric}_mean"], best[metric]) else text)
        for column, _ in costs:
            text = _number(row[f"{column}_mean"], _spec(column))
            cells.append(f"**{text}**" if _is_best(row[f"{column}_mean"], best[column]) else text)
        cells += [str(row["n"]), _count(row["teacher_seeds"])]
        if tested:
            cells.append(row["baseline"])
            for m in tested:
                cells += _test_cells(row, m)
        rows.append(cells)
    caption = f"{split} metrics, mean ± std over the n runs (student seeds)" + (
        "; paired tests on per-user test metrics, each side averaged over its seeds per user" if tested else "")
    return f"{caption}\n\n" + markdown_table(headers, rows) + "\n" + "".join(f"\n{note}\n" for note in notes)


def machine_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary for csv/json: seeds as `0;1;2`, run folders left out."""
    frame = summary.drop(columns=["runs"]).copy()
    frame["seeds"] = [";".join(str(s) for s in seeds) for seeds in frame["seeds"]]
    return frame


def _plain(value: Any) -> Any:
    """JSON-safe scalars: NaN becomes null, numpy numbers become Python numbers."""
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def render_json(summary: pd.DataFrame, keys: list[str], metrics: list[str], split: str, baseline: str | None,
                failures: list[Failure], notes: list[str]) -> str:
    """Everything as one JSON object: settings, one record per group, failed jobs, notes."""
    records = [{k: _plain(v) for k, v in record.items()} for record in machine_frame(summary).to_dict("records")]
    for record, runs, seeds in zip(records, summary["runs"], summary["seeds"]):
        record.update(runs=list(runs), seeds=[_plain(s) for s in seeds])
    document = {"split": split, "group_keys": keys, "metrics": metrics, "baseline": baseline or "student (same runs)",
                "paired_tests": PROTOCOL,
                "groups": records, "failed": [vars(f) for f in failures], "notes": notes}
    return json.dumps(document, indent=2) + "\n"


def report_failures(failures: list[Failure]) -> None:
    """A short warning list of failed jobs, on stderr (stdout stays machine-readable)."""
    if not failures:
        return
    console = Console(stderr=True)
    console.print(f"[yellow]warning: {len(failures)} failed job(s) or unreadable run(s) left out:[/yellow]")
    for failure in failures:
        message = failure.message.splitlines()[0] if failure.message else ""
        console.print(f"  {failure.run}: {failure.error}: {message[:160]}", markup=False, highlight=False,
                      soft_wrap=True)


def with_tests(summary: pd.DataFrame, rows: pd.DataFrame, keys: list[str], metrics: list[str],
               options: argparse.Namespace, configs: dict[str, dict[str, Any]]) -> tuple[pd.DataFrame, list[str]]:
    """The summary with the paired tests' columns, and notes on the metrics left untested."""
    if options.split == "test_without_refit":  # per-user values are saved for the refitted models only
        return summary, ["no paired tests under --split test_without_refit: a refitted run saves per-user test "
                         "values after its refit only (--split test tests those)"]
    per_user = PerUser()
    runs = sorted({run for group in summary["runs"] for run in group})
    missing = without_per_user_values(runs, metrics, per_user)
    notes = [f"not tested, no per-user values in these runs: {', '.join(missing)}"] if missing else []
    testable = [m for m in metrics if m not in missing]
    tests = significance(summary, rows, keys, testable, options.baseline, configs, per_user)
    summary = pd.concat([summary, tests], axis=1)
    return summary, notes + unpaired_notes(summary, keys, testable, per_user)


def unpaired_notes(summary: pd.DataFrame, keys: list[str], metrics: list[str], per_user: PerUser) -> list[str]:
    """Why a row that has a baseline got 0 pairs on a metric: its runs hold no per-user values of it, or its users
    and the baseline's do not meet (other data, or the baseline's runs lack the metric)."""
    notes = []
    for _, row in summary.iterrows():
        for metric in metrics:
            if row.get(f"{metric}_pairs") != 0:
                continue
            name = ", ".join(f"{key}={row[key]}" for key in [*keys, "role"])
            lacking = [run for run in row["runs"] if (table := per_user(run)) is None or metric not in table]
            if len(lacking) == len(row["runs"]):
                reason = (f"none of its {len(lacking)} run(s) has per-user {metric} values "
                          f"(per_user.parquet missing or without the column), e.g. {lacking[0]}")
            elif row["baseline"] == STUDENT_ALONE and not any(
                    (per_user(run)["role"] == "student").any() for run in row["runs"] if run not in lacking):
                reason = ("its runs have no per-user rows of the student trained alone (role `student`; "
                          "train_student_alone=false?); pair with another group instead: --baseline KEY=VALUE")
            else:
                reason = (f"its users and those of the baseline ({row['baseline']}) with per-user {metric} values "
                          "do not meet")
            notes.append(f"0 pairs for {name} on {metric}: {reason}")
    return notes


def compare_main(args: list[str]) -> None:
    """Parse `compare` arguments, load and group the runs, test against the baseline, print and plot."""
    options = parse_args(args)
    if options.plot is not None and options.plot.suffix.lower() != ".png":
        raise RecdistillError(f"compare: --plot {options.plot} must name a .png file")
    runs = load_runs(options.paths, options.split)
    lower = {m.lower(): m for m in runs.metrics}
    metrics = list(dict.fromkeys(lower.get(m.lower(), m) for m in options.metric or headline_metrics(runs.metrics)))
    unknown = [m for m in metrics if m not in runs.metrics]
    if unknown:
        raise RecdistillError(f"compare: unknown metric(s) {unknown}; valid: {runs.metrics}")
    keys = group_keys(runs, options.by)
    rows = with_group_columns(runs, keys)
    summary = aggregate(rows, keys, metrics)
    summary.insert(summary.columns.get_loc("n") + 1, "teacher_seeds", teacher_seeds(summary, runs.configs))
    summary, notes = with_tests(summary, rows, keys, metrics, options, runs.configs)
    if options.format == "table":
        render_table(summary, keys, metrics, options.split, notes)
    elif options.format == "markdown":
        sys.stdout.write(render_markdown(summary, keys, metrics, options.split, notes))
    elif options.format == "csv":
        sys.stdout.write(machine_frame(summary).assign(split=options.split).to_csv(index=False))
        for note in notes:  # stdout stays machine-readable
            Console(stderr=True).print(note, markup=False, highlight=False, soft_wrap=True)
    else:
        sys.stdout.write(render_json(summary, keys, metrics, options.split, options.baseline, runs.failures, notes))
    if options.plot is not None:
        metric = metrics[0]
        save_figure(comparison_figure(summary, keys, metric, options.split), options.plot)
        Console(stderr=True).print(f"wrote {options.plot}", markup=False, highlight=False, soft_wrap=True)
    report_failures(runs.failures)
