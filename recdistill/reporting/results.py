"""Evaluate each model role and write the run's result files atomically.

Files: metrics.json (run info + one block per role), metrics.csv (one flat row per role),
history.csv (per role and epoch: every loss term, validation metrics, seconds),
per_user.parquet (per role and user test metrics, for paired significance tests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from recdistill.evaluation.efficiency import efficiency_report
from recdistill.evaluation.predict import predict
from recdistill.evaluation.rating_metrics import per_user_rating_metrics, rating_metrics
from recdistill.models.base import RatingModel
from recdistill.utils.atomic import write_csv, write_json, write_parquet

log = logging.getLogger(__name__)

ROLE_ORDER = ("teacher", "student", "student_kd", "global_mean", "item_mean", "popularity", "random",
              "oracle_popularity")


@dataclass
class RoleResult:
    """Metrics of one model role on valid and test, its efficiency, training summary, per-user table."""

    metrics: dict[str, Any]
    per_user: pd.DataFrame
    history: pd.DataFrame = field(default_factory=pd.DataFrame)


def evaluate_role(role: str, model: RatingModel, info: dict, run: Any, cfg: DictConfig,
                  device: torch.device) -> RoleResult:
    """Valid/test metrics, per-user test metrics and efficiency of one trained model (`run`: RunData)."""
    block: dict[str, Any] = {"model": model.config.name}
    per_user = pd.DataFrame()
    windows = run.windows
    for split in ("valid", "test"):
        output = predict(model, run.evaluation[split], cfg.trainer.eval_batch_size, device)
        truth = windows[split].targets["rating"]
        block[split] = rating_metrics(output.logits, output.rating, truth)
        if split == "test":
            per_user = per_user_rating_metrics(windows[split].targets["user"], output.logits, output.rating, truth)
            per_user.insert(0, "role", role)
    latency_rows = torch.arange(min(cfg.evaluator.latency_batch_size, len(windows["test"])))
    block["efficiency"] = efficiency_report(model, windows["test"].batch(latency_rows, device),
                                            n_repeats=cfg.evaluator.latency_repeats)
    history = add_training_summary(block, role, info)
    log.info("evaluate %s: test %s", role, {k: round(v, 4) for k, v in block["test"].items()})
    return RoleResult(block, per_user, history)


def add_training_summary(block: dict[str, Any], role: str, info: dict) -> pd.DataFrame:
    """Put the training summary (and any transfer summary) of `info` into `block`; return the
    per-epoch history with a role column."""
    training = dict(info.get("training", {}))
    history = pd.DataFrame(training.pop("history", []))
    if not history.empty:
        history.insert(0, "role", role)
    block["training"] = {**training, "from_cache": info.get("from_cache", False)}
    if "transfer" in info:
        block["transfer"] = info["transfer"]
    return history


def flat_row(role: str, block: dict[str, Any]) -> dict[str, Any]:
    """One metrics.csv row: role plus `section_metric` columns."""
    row: dict[str, Any] = {"role": role, "model": block["model"]}
    for section in ("valid", "test", "efficiency"):
        row.update({f"{section}_{k}": v for k, v in block[section].items()})
    row.update({f"training_{k}": v for k, v in block["training"].items() if not isinstance(v, dict)})
    return row


def write_results(run_dir: Path, info: dict[str, Any], results: dict[str, RoleResult]) -> dict[str, Any]:
    """Write metrics.json/csv, history.csv and per_user.parquet; print the final table."""
    roles = [r for r in ROLE_ORDER if r in results]
    metrics = {"run": info, **{role: results[role].metrics for role in roles}}
    write_json(run_dir / "metrics.json", metrics)
    write_csv(run_dir / "metrics.csv", pd.DataFrame([flat_row(r, results[r].metrics) for r in roles]))
    histories = [results[r].history for r in roles if not results[r].history.empty]
    write_csv(run_dir / "history.csv", pd.concat(histories, ignore_index=True) if histories else pd.DataFrame())
    write_parquet(run_dir / "per_user.parquet", pd.concat([results[r].per_user for r in roles], ignore_index=True))
    print_table(metrics, roles)
    return metrics


def print_table(metrics: dict[str, Any], roles: list[str], console: Console | None = None) -> None:
    """A rich table of test metrics and efficiency per role; best value per metric in bold."""
    from recdistill.reporting.runs import headline_metrics, higher_is_better

    table = Table(title=f"{metrics['run']['experiment']} (seed {metrics['run']['seed']}) — test")
    columns = [(name, higher_is_better(name)) for name in headline_metrics(metrics[roles[0]]["test"])]
    table.add_column("role")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for name in ("params", "size KB", "latency ms"):
        table.add_column(name, justify="right")
    best = {name: (max if higher else min)(metrics[r]["test"][name] for r in roles) for name, higher in columns}
    for role in roles:
        test, eff = metrics[role]["test"], metrics[role]["efficiency"]
        cells = [f"[bold]{test[n]:.4f}[/bold]" if test[n] == best[n] else f"{test[n]:.4f}" for n, _ in columns]
        table.add_row(role, *cells, f"{eff['params']:,}", f"{eff['size_bytes'] / 1024:.0f}",
                      f"{eff['latency_ms_median']:.2f}")
    (console or Console()).print(table)
