"""Sweep bookkeeping: job folders named by their overrides, one outcome record per job, and a
summary table with the exit code at the end of a multirun.

A job may run in another process (`hydra/launcher=joblib`), so jobs and the launching process
share nothing but files: each job writes its outcome to `SWEEP_DIR/.jobs/NUM.json` (besides its
`metrics.json` or `error.json`), and `SweepSummary`, a Hydra callback registered in
`configs/hydra/default.yaml`, reads the outcomes of this invocation when the sweep ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from recdistill.utils.atomic import write_json

log = logging.getLogger(__name__)

#: The resolver `hydra.sweep.subdir` calls: `${recdistill.job_folder:${hydra.job.override_dirname}}`.
RESOLVER = "recdistill.job_folder"
MAX_NAME = 120  # characters; file systems allow 255 bytes, and paths stay readable
UNSAFE = re.compile(r"[^A-Za-z0-9._,=+@%\[\]-]")  # also keeps `/`, spaces, quotes and `:` out of names
OUTCOMES = ".jobs"  # below the sweep folder: one record per job number, rewritten by every invocation
STATUSES = {"done": "done", "skipped": "skipped: already complete", "failed": "failed"}


def job_folder_name(override_dirname: str) -> str:
    """The job folder for a job's overrides (`seed=2,+experiment=x` as Hydra joins them, sorted):
    kept as it is when safe and short; otherwise unsafe characters become `_`, the name is cut, and
    a hash of the overrides is appended, so two jobs never share a folder."""
    if not override_dirname:
        return "defaults"  # a sweep without task overrides: one job, not the sweep folder itself
    safe = UNSAFE.sub("_", override_dirname)
    if safe == override_dirname and len(safe) <= MAX_NAME and not safe.startswith("."):
        return safe
    digest = hashlib.sha256(override_dirname.encode()).hexdigest()[:10]
    return f"{safe.lstrip('.')[: MAX_NAME - len(digest) - 1]}-{digest}"


def register_resolver() -> None:
    """Make `${recdistill.job_folder:...}` available to the config (joblib workers get a copy of the
    resolvers from Hydra with the rest of its state)."""
    OmegaConf.register_new_resolver(RESOLVER, job_folder_name, replace=True)


def record_outcome(run_dir: Path, status: str, error: BaseException | None = None) -> None:
    """Write this sweep job's outcome (`done`, `skipped` or `failed`) for the summary; a failed job
    also gets `error.json` in its folder, unless the folder holds the finished `metrics.json` of
    another config, which stays untouched (the outcome record still carries the error)."""
    hydra = HydraConfig.get()
    sweep_dir = Path(hydra.sweep.dir).absolute()
    outcome = {"num": hydra.job.num, "folder": os.path.relpath(run_dir, sweep_dir),
               "overrides": list(hydra.overrides.task), "status": status, "finished": time.time()}
    if error is not None:
        outcome |= {"error": type(error).__name__, "message": str(error)}
        if (run_dir / "metrics.json").exists():
            log.warning("%s holds a finished metrics.json, which stays as it is: error.json is not written "
                        "there (the sweep summary lists the error)", run_dir)
        else:
            write_json(run_dir / "error.json", {"error": outcome["error"], "message": outcome["message"],
                                                "traceback": "".join(traceback.format_exception(error))})
    else:
        (run_dir / "error.json").unlink(missing_ok=True)  # left by an earlier, failed attempt
    write_json(sweep_dir / OUTCOMES / f"{hydra.job.num}.json", outcome)


def read_outcomes(sweep_dir: Path, since: float) -> list[dict[str, Any]]:
    """The outcome records that jobs wrote after `since` (this invocation), by job number."""
    outcomes = [json.loads(path.read_text()) for path in (sweep_dir / OUTCOMES).glob("*.json")]
    return sorted((o for o in outcomes if o["finished"] >= since), key=lambda o: o["num"])


def first_line(text: str) -> str:
    """The first non-empty line of `text`."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def summary_table(outcomes: list[dict[str, Any]], sweep_dir: Path) -> Table:
    """One row per job: folder, the overrides that differ between the jobs (the shared ones are in
    the title), status and, for a failure, error type and first line."""
    shared = set.intersection(*(set(o["overrides"]) for o in outcomes)) if len(outcomes) > 1 else set()
    title = f"sweep {sweep_dir}" + (f"\nevery job: {' '.join(sorted(shared))}" if shared else "")
    table = Table(title=title)
    for column in ("job", "overrides", "status", "error"):
        table.add_column(column, overflow="fold")
    for outcome in outcomes:
        status = STATUSES[outcome["status"]]
        error = f"{outcome['error']}: {first_line(outcome['message'])}" if "error" in outcome else ""
        table.add_row(outcome["folder"], " ".join(o for o in outcome["overrides"] if o not in shared),
                      f"[red]{status}[/red]" if outcome["status"] == "failed" else status, error)
    return table


class SweepSummary(Callback):
    """At the end of a multirun: print the summary table; exit with 1 when any job failed.

    Hydra turns an exception raised by a callback into a warning, so the failure leaves as
    `SystemExit(1)`, which ends the command like Hydra's own failed sweeps."""

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Note when this invocation started: older outcome records in the sweep folder are not its own."""
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Summarise the jobs of this invocation."""
        sweep_dir = Path(config.hydra.sweep.dir).absolute()
        outcomes = read_outcomes(sweep_dir, self.started)
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)  # a log file or pipe: rows on one line each
        console.print(summary_table(outcomes, sweep_dir))
        counts = {status: sum(o["status"] == status for o in outcomes) for status in STATUSES}
        log.info("sweep %s: %d done, %d skipped, %d failed", sweep_dir, counts["done"], counts["skipped"],
                 counts["failed"])
        if counts["failed"]:
            log.error("%d of %d jobs failed; their error.json and run.log say why", counts["failed"], len(outcomes))
            raise SystemExit(1)
