"""What a run writes: the run-folder claim, the `run` block of metrics.json (protocol, seeds,
versions, git revision, config), and the result files, each written atomically.

Files: metrics.json (run info + one block per role), metrics.csv (one flat row per role),
history.csv (per role and epoch: every loss term, validation metrics, seconds),
per_user.parquet (per role and user test metrics, for paired significance tests) and, where the
task produces lists, topk.parquet (per role, user and rank).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from recdistill.errors import ConfigError
from recdistill.evaluation.result import RoleResult
from recdistill.reporting.runs import headline_metrics, higher_is_better
from recdistill.training import distributed
from recdistill.utils import runinfo
from recdistill.utils.atomic import write_csv, write_json, write_parquet

#: Roles in the order tables list them: the models, then the reference roles of every task.
ROLE_ORDER = ("teacher", "student", "student_kd", "global_mean", "item_mean", "popularity", "random",
              "oracle_popularity")


def claim_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """Mark `run_dir` with this config's key; refuse to continue a folder started with another config,
    whose checkpoints would otherwise be mixed into this run."""
    key = runinfo.stable_hash(runinfo.run_identity(OmegaConf.to_container(cfg, resolve=True)))
    marker = run_dir / "run_key.json"
    if marker.exists():
        previous = json.loads(marker.read_text())["key"]
        if previous != key:
            raise ConfigError(f"{run_dir} holds a run of a different config (key {previous}, this one {key}); "
                              f"use a new folder, or resume it with `recdistill train resume={run_dir}`")
    else:
        write_json(marker, {"key": key})


def run_info(cfg: DictConfig, device: torch.device, models: dict[str, tuple[Any, dict]], split_key: str,
             protocol: dict[str, Any], stage_seconds: dict[str, float], started: float,
             fingerprint: str | None = None) -> dict[str, Any]:
    """The `run` block of metrics.json: what ran, under which protocol, with which code and config
    (`fingerprint`: the data's content fingerprint, None for generated data)."""
    teacher_info = models["teacher"][1]
    return {
        "experiment": cfg.experiment_name, "task": cfg.task, "seed": cfg.seed, "teacher_seed": cfg.teacher_seed,
        "device": str(device), "processes": distributed.world_size(),  # torchrun: data-parallel processes
        "dataset": cfg.dataset.name, "teacher": cfg.teacher.name, "student": cfg.student.name,
        "distill": cfg.distill.name, "loss_formula": models.get("student_kd", (None, {}))[1].get("loss_formula"),
        "teacher_key": teacher_info["key"], "student_key": models.get("student", (None, {}))[1].get("key"),
        "teacher_from_cache": teacher_info["from_cache"], "split_key": split_key, "data_fingerprint": fingerprint,
        "protocol": protocol, "stage_seconds": stage_seconds, "seconds": time.time() - started,
        "versions": runinfo.package_versions(), "git": runinfo.git_revision(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def add_training_summary(result: RoleResult, role: str, info: dict) -> None:
    """Put the training summary (and any transfer summary) of `info` into the role's block, and its
    per-epoch history, with a role column, into `result.history`."""
    training = dict(info.get("training", {}))
    history = pd.DataFrame(training.pop("history", []))
    if not history.empty:
        history.insert(0, "role", role)
    result.metrics["training"] = {**training, "from_cache": info.get("from_cache", False)}
    if "transfer" in info:
        result.metrics["transfer"] = info["transfer"]
    result.history = history


def flat_row(role: str, block: dict[str, Any]) -> dict[str, Any]:
    """One metrics.csv row: role plus `section_metric` columns."""
    row: dict[str, Any] = {"role": role, "model": block["model"]}
    for section in ("valid", "test", "efficiency"):
        row.update({f"{section}_{k}": v for k, v in block[section].items()})
    row.update({f"training_{k}": v for k, v in block["training"].items() if not isinstance(v, dict)})
    return row


def write_results(run_dir: Path, info: dict[str, Any], results: dict[str, RoleResult]) -> dict[str, Any]:
    """Write metrics.json/csv, history.csv, per_user.parquet and topk.parquet; print the final table."""
    roles = [r for r in ROLE_ORDER if r in results] + sorted(set(results) - set(ROLE_ORDER))
    metrics = {"run": info, **{role: results[role].metrics for role in roles}}
    write_json(run_dir / "metrics.json", metrics)
    write_csv(run_dir / "metrics.csv", pd.DataFrame([flat_row(r, results[r].metrics) for r in roles]))
    histories = [results[r].history for r in roles if not results[r].history.empty]
    write_csv(run_dir / "history.csv", pd.concat(histories, ignore_index=True) if histories else pd.DataFrame())
    write_parquet(run_dir / "per_user.parquet", pd.concat([results[r].per_user for r in roles], ignore_index=True))
    topk = [results[r].topk for r in results if results[r].topk is not None]
    if topk:
        write_parquet(run_dir / "topk.parquet", pd.concat(topk, ignore_index=True))
    print_table(metrics, roles)
    return metrics


def print_table(metrics: dict[str, Any], roles: list[str], console: Console | None = None) -> None:
    """A rich table of test metrics and efficiency per role; best value per metric in bold."""
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
