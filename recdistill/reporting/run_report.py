"""`report.md` and `training_curves.png` for one run folder, from its result files alone."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from recdistill.errors import RecdistillError
from recdistill.reporting.plots import save_figure, training_curves_figure
from recdistill.reporting.runs import ROLE_ORDER, flatten, headline_metrics, label
from recdistill.utils.atomic import write_text

log = logging.getLogger(__name__)

CURVES = "training_curves.png"


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table; `|` inside cells is escaped."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _metrics_section(metrics: dict[str, Any], roles: list[str]) -> str:
    names = headline_metrics(metrics[roles[0]]["test"])
    headers = ["role", "model", *(f"{split} {name}" for split in ("valid", "test") for name in names),
               "params", "size KB", "latency ms (median)", "throughput /s"]
    rows = []
    for role in roles:
        block = metrics[role]
        valid, test, efficiency = block["valid"], block["test"], block["efficiency"]
        rows.append([role, block.get("model", ""),
                     *(f"{split[m]:.4f}" for split in (valid, test) for m in names),
                     f"{efficiency['params']:,}", f"{efficiency['size_bytes'] / 1024:.0f}",
                     f"{efficiency['latency_ms_median']:.2f}", f"{efficiency['throughput_per_s']:,.0f}"])
    return markdown_table(headers, rows)


def _training_section(metrics: dict[str, Any], roles: list[str]) -> str:
    rows = []
    for role in roles:
        training = metrics[role].get("training", {})
        best = training.get("best_valid")
        if isinstance(best, dict):
            best = ", ".join(f"{k} {v:.4f}" for k, v in best.items())
        rows.append([role, training.get("best_epoch", ""), "" if best is None else best,
                     training.get("epochs", ""), f"{training.get('seconds', 0.0):.1f}",
                     "yes" if training.get("from_cache") else "no"])
    return markdown_table(["role", "best epoch", "best valid", "epochs", "seconds", "from cache"], rows)


def _refit_section(metrics: dict[str, Any], roles: list[str]) -> str:
    """trainer.refit_on_valid: per role, the refit's epochs, targets and cost, and the test metrics
    of the first pass next to the refit's (which the Metrics table reports)."""
    refitted = [role for role in roles if "refit" in metrics[role]]
    names = headline_metrics(metrics[refitted[0]]["test"])
    rows = []
    for role in refitted:
        block, refit = metrics[role], metrics[role]["refit"]
        rows.append([role, refit.get("epochs", ""), f"{refit.get('targets', 0):,}",
                     f"{refit.get('seconds') or 0.0:.1f}", "yes" if refit.get("from_cache") else "no",
                     *(f"{block['test_without_refit'][m]:.4f} → {block['test'][m]:.4f}" for m in names)])
    return markdown_table(["role", "epochs", "targets", "seconds", "from cache",
                           *(f"test {name} (first pass → refit)" for name in names)], rows)


def _timings_section(info: dict[str, Any]) -> str:
    stages = info.get("stage_seconds", {})
    rows = [[stage, f"{seconds:.2f}"] for stage, seconds in stages.items()]
    if "seconds" in info:
        rows.append(["**total**", f"{info['seconds']:.2f}"])
    return markdown_table(["stage", "seconds"], rows)


def curve_column(metrics: dict[str, Any], history_columns: list[str]) -> str | None:
    """The validation column of history.csv to plot: the student's `trainer.student.monitor` from
    the run's config, else the first headline metric with a column; None when there is none."""
    config = metrics["run"].get("config") or {}
    monitor = ((config.get("trainer") or {}).get("student") or {}).get("monitor")
    role = next((r for r in ROLE_ORDER if r in metrics), None)
    candidates = ([monitor] if monitor else []) + (headline_metrics(metrics[role]["valid"]) if role else [])
    return next((f"valid_{name}" for name in candidates if f"valid_{name}" in history_columns), None)


def report_markdown(metrics: dict[str, Any], curves: bool) -> str:
    """The text of report.md for one run's metrics.json content."""
    info = metrics["run"]
    roles = [r for r in ROLE_ORDER if r in metrics]
    git = info.get("git") or {}
    lines = [f"# {info.get('experiment', 'run')} — seed {info.get('seed')}", "",
             f"- dataset: {info.get('dataset')}; teacher: {info.get('teacher')}; student: {info.get('student')}; "
             f"distillation: {info.get('distill')}",
             f"- device: {info.get('device')}; teacher key: {info.get('teacher_key')}; "
             f"split key: {info.get('split_key')}",
             f"- git: {git.get('commit', 'unknown')}" + (" (uncommitted changes)" if git.get("dirty") else ""), "",
             "## Protocol", ""]
    lines += [f"- `{key}`: {label(value)}" for key, value in flatten(info.get("protocol", {})).items()]
    lines += ["", "## Metrics", "", "Valid and test metrics per role; efficiency measured on the test inputs.", "",
              _metrics_section(metrics, roles), "",
              "## Loss", "", f"`{info.get('loss_formula') or 'unknown'}` (distilled student)", "",
              "## Training", "", _training_section(metrics, roles), ""]
    if any("refit" in metrics[role] for role in roles):
        lines += ["## Refit on train + valid", "",
                  "Test metrics above are the refits'; validation metrics and the Training table are the first "
                  "pass's.", "", _refit_section(metrics, roles), ""]
    lines += ["## Timings", "", _timings_section(info), ""]
    if curves:
        lines += ["## Training curves", "", f"![training curves]({CURVES})", ""]
    return "\n".join(lines)


def write_run_report(run_dir: Path) -> None:
    """Write report.md (protocol, metrics, loss, timings) and training_curves.png into `run_dir`."""
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.exists():
        raise RecdistillError(f"report: {metrics_file} not found (is {run_dir} a finished run folder?)")
    metrics = json.loads(metrics_file.read_text())
    history_file = run_dir / "history.csv"
    curves = False
    if history_file.exists() and history_file.stat().st_size > 0:
        try:
            history = pd.read_csv(history_file)
        except pd.errors.EmptyDataError:
            history = pd.DataFrame()
        if {"role", "epoch", "train_loss"} <= set(history.columns) and not history.empty:
            save_figure(training_curves_figure(history, curve_column(metrics, list(history.columns))),
                        run_dir / CURVES)
            curves = True
    if not curves:
        log.info("report: no training history in %s; report.md without curves", run_dir)
    write_text(run_dir / "report.md", report_markdown(metrics, curves))
    log.info("report: wrote %s", run_dir / "report.md")
