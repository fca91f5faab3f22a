"""Experiment tracking (`logger=tensorboard|mlflow`): what a run reports besides its own files.

Logged: each epoch's loss terms and validation metrics per role (`<role>/train_<term>`,
`<role>/valid_<metric>`, `<role>/seconds`, step = epoch; the names of history.csv), told by the
training loop's `EpochObserver`; the final metrics per role and split (`<role>/<split>/<metric>`,
`<role>/efficiency/<figure>`: every number of metrics.json's role blocks); the resolved config as
parameters with dotted keys (`trainer.teacher.lr`); and the run folder: TensorBoard writes its event
files into `<run>/tensorboard`, MLflow records the folder as the tag `run_dir` (the checkpoints,
tables and report stay there, never copied into the store).

Tracking never decides a result: the run's own files are written before the final metrics are
logged, and a tracker that fails (store unreachable, disk full, a refused name) is dropped with one
warning while the run goes on. MLflow and TensorBoard are imported only when chosen.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol
from urllib.parse import urlparse

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from recdistill.utils.atomic import write_json

if TYPE_CHECKING:
    from recdistill.config_schema import LoggerConfig

log = logging.getLogger(__name__)

#: Where `logger=mlflow` keeps its runs when no `logger.tracking_uri` is given (relative to the working directory).
LOCAL_MLFLOW_STORE = Path("outputs") / "mlruns"
#: In the run folder: which tracker run this folder logs to, so `resume=RUN_DIR` continues it.
MARKER = "tracking.json"
MLFLOW_MAX_PARAM_LENGTH = 6000  # characters; MLflow refuses longer parameter values
Scalar = str | int | float | bool


class Backend(Protocol):
    """One tracking library: started with the run, told every epoch, finished with metrics.json."""

    def epoch(self, label: str, row: dict[str, float]) -> None: ...

    def finish(self, metrics: dict[str, Any]) -> None: ...

    def close(self, failed: bool) -> None: ...


def config_parameters(cfg: DictConfig) -> dict[str, Scalar]:
    """The resolved config as flat dotted keys; lists, empty groups and nulls as JSON text. Without
    `resume`, which says where a run continues, not what it is."""
    flat: dict[str, Scalar] = {}

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict) and node:
            for name, value in node.items():
                walk(value, f"{key}.{name}" if key else str(name))
        else:
            flat[key] = node if isinstance(node, (str, int, float, bool)) else json.dumps(node)

    walk({k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "resume"}, "")
    return flat


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """`<role>/<split>/<metric>` for valid and test and `<role>/efficiency/<figure>`: every finite
    number of metrics.json's role blocks."""
    found: dict[str, float] = {}
    for role, block in metrics.items():
        if role == "run" or not isinstance(block, dict):
            continue
        for part in ("valid", "test", "efficiency"):
            for name, value in (block.get(part) or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    found[f"{role}/{part}/{name}"] = float(value)
    return found


def epoch_scalars(label: str, row: dict[str, float]) -> tuple[int, dict[str, float]]:
    """(epoch, {`<label>/<column>`: value}) of one history row."""
    return int(row["epoch"]), {f"{label}/{k}": float(v) for k, v in row.items() if k != "epoch"}


def mlflow_name(name: str) -> str:
    """A metric or parameter name MLflow accepts (alphanumerics, `_ - . : /` and spaces):
    `ndcg@10` -> `ndcg_at_10`, `teacher (fine-tune)` -> `teacher fine-tune`."""
    return re.sub(r"[^\w.\- :/]", "_", name.replace("@", "_at_").replace("(", "").replace(")", ""))


class TensorBoardBackend:
    """Event files in `<run>/tensorboard`: scalars per epoch and final, the config as hparams and text."""

    def __init__(self, logger: LoggerConfig, cfg: DictConfig, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter, summary

        self.hparams = summary.hparams
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.parameters = config_parameters(cfg)
        yaml = OmegaConf.to_yaml(cfg, resolve=True)
        self.writer.add_text("config", "    " + yaml.replace("\n", "\n    "))  # a markdown code block
        log.info("logger=tensorboard: event files in %s", run_dir / "tensorboard")

    def epoch(self, label: str, row: dict[str, float]) -> None:
        step, scalars = epoch_scalars(label, row)
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def finish(self, metrics: dict[str, Any]) -> None:
        finals = final_metrics(metrics)
        for tag, value in finals.items():
            self.writer.add_scalar(tag, value, 0)
        for part in self.hparams(self.parameters, finals):  # the HPARAMS dashboard: config against results
            self.writer.file_writer.add_summary(part)
        self.writer.flush()

    def close(self, failed: bool) -> None:
        self.writer.close()


class MlflowBackend:
    """One MLflow run per run folder (a resumed folder continues its MLflow run), in the store of
    `logger.tracking_uri`, else a local file store in outputs/mlruns."""

    def __init__(self, logger: LoggerConfig, cfg: DictConfig, run_dir: Path) -> None:
        uri = logger.tracking_uri or LOCAL_MLFLOW_STORE.absolute().as_uri()
        local = urlparse(uri).scheme in ("", "file")
        if local:  # MLflow 3 keeps its file store in maintenance mode, usable by this opt-in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self.metric, self.client, self.uri = Metric, MlflowClient(tracking_uri=uri), uri
        store = Path(urlparse(uri).path) if local else None
        experiment = self._experiment_id(logger.experiment or str(cfg.experiment_name), store)
        self.run_id = self._run_id(experiment, run_dir)
        params = [Param(mlflow_name(k), str(v)[:MLFLOW_MAX_PARAM_LENGTH]) for k, v in config_parameters(cfg).items()]
        self.client.log_batch(self.run_id, params=params)
        log.info("logger=mlflow: run %s in %s", self.run_id, uri)

    def _experiment_id(self, name: str, store: Path | None) -> str:
        """The experiment's id, created by the first run that needs it (sweep jobs create it once:
        under a file lock in a local store, by retrying the lookup elsewhere)."""
        if store is not None:
            store.mkdir(parents=True, exist_ok=True)
        with FileLock(str(store / ".experiments.lock")) if store is not None else nullcontext():
            experiment = self.client.get_experiment_by_name(name)
            if experiment is not None:
                if experiment.lifecycle_stage == "deleted":
                    self.client.restore_experiment(experiment.experiment_id)
                return experiment.experiment_id
            try:
                return self.client.create_experiment(name)
            except Exception:  # noqa: BLE001 - another job created it first; anything else fails the lookup too
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    raise
                return experiment.experiment_id

    def _run_id(self, experiment: str, run_dir: Path) -> str:
        """The run this folder logged to before (same store, still there), or a new one."""
        marker = run_dir / MARKER
        previous = json.loads(marker.read_text()).get("mlflow", {}) if marker.exists() else {}
        if previous.get("tracking_uri") == self.uri:
            try:
                if self.client.get_run(previous["run_id"]).info.lifecycle_stage == "active":
                    self.client.update_run(previous["run_id"], status="RUNNING")
                    return previous["run_id"]
            except Exception:  # noqa: BLE001 - gone from the store: start a new run
                log.info("logger=mlflow: run %s of %s is gone; starting a new one", previous["run_id"], marker)
        run = self.client.create_run(experiment, run_name=run_dir.name, tags={"run_dir": str(run_dir.absolute())})
        write_json(marker, {"mlflow": {"tracking_uri": self.uri, "run_id": run.info.run_id}})
        return run.info.run_id

    def _log(self, scalars: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self.metric(mlflow_name(k), v, now, step)
                                                    for k, v in scalars.items()])

    def epoch(self, label: str, row: dict[str, float]) -> None:
        step, scalars = epoch_scalars(label, row)
        self._log(scalars, step)

    def finish(self, metrics: dict[str, Any]) -> None:
        self._log(final_metrics(metrics), 0)

    def close(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


BACKENDS: dict[str, Callable[[LoggerConfig, DictConfig, Path], Backend]] = {
    "tensorboard": TensorBoardBackend, "mlflow": MlflowBackend}


class Tracker:
    """The run's tracker: forwards to the chosen backend (none for logger=none); the backend's first
    failure is one warning, after which the run goes on untracked."""

    def __init__(self, logger: LoggerConfig, cfg: DictConfig, run_dir: Path) -> None:
        self.name, self.run_dir = logger.name, run_dir
        self.backend: Backend | None = None
        if logger.name in BACKENDS:
            self.backend = self._guarded("start", lambda: BACKENDS[logger.name](logger, cfg, run_dir))

    def epoch(self, label: str, row: dict[str, float]) -> None:
        """Log one epoch's history row of the loop labelled `label` (an `EpochObserver`)."""
        if self.backend is not None:
            self._guarded("log an epoch", lambda: self.backend.epoch(label, row))

    def finish(self, metrics: dict[str, Any]) -> None:
        """Log the final metrics (metrics.json, already written)."""
        if self.backend is not None:
            self._guarded("log the final metrics", lambda: self.backend.finish(metrics))

    def close(self, failed: bool) -> None:
        """End the tracker's run, as failed when the study raised."""
        if self.backend is not None:
            self._guarded("close its run", lambda: self.backend.close(failed))
            self.backend = None

    def _guarded(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - tracking must never cost the run its results
            log.warning("logger=%s could not %s (%s: %s); the run goes on without tracking, its results are "
                        "written to %s", self.name, what, type(error).__name__, str(error).splitlines()[0] if
                        str(error) else "", self.run_dir)
            backend, self.backend = self.backend, None
            if backend is not None:
                try:
                    backend.close(failed=True)
                except Exception:  # noqa: BLE001 - already reported
                    pass
            return None


@contextmanager
def tracking(logger: LoggerConfig, cfg: DictConfig, run_dir: Path) -> Iterator[Tracker]:
    """The run's tracker for the block; its run is ended as failed when the block raises."""
    tracker = Tracker(logger, cfg, run_dir)
    try:
        yield tracker
    except BaseException:
        tracker.close(failed=True)
        raise
    tracker.close(failed=False)
