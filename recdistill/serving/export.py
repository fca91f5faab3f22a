"""`export_run`: one role of a finished run as a self-contained folder that onnxruntime serves.

The folder (written next to its destination, checked, then moved into place in one rename):
    manifest.json      what the folder holds, how to serve it, the check, protocol and versions
                       (`recdistill.serving.manifest`)
    model.onnx         sequence models: seq (batch, length) -> scores (batch, n_items), the model's
                       own forward with its explicit attention masks, batch and history length dynamic;
                       dot-product ID models: user (batch,) -> scores, the user and item vector tables
    score_state.onnx   dot-product models: state (batch, dim) -> scores, for folded-in new users
    item_vectors.npy   dot-product models: (n_items, dim) float32, the vectors the fold-in regresses on
    users.parquet, items.parquet, history.parquet   raw ids, titles, histories (`recdistill.serving.catalog`)

Graphs come from torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`); every export is
checked with onnxruntime against the checkpoint (`recdistill.serving.onnx_check`). A model the
exporter cannot convert is a clear error (GRU4Rec with torch 2.13: its per-row rotation takes a
remainder by the dynamic history length); `recdistill recommend RUN_DIR` serves it with PyTorch.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from importlib import metadata, util
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from recdistill.errors import ConfigError, DependencyError, RecdistillError
from recdistill.serving.catalog import HISTORY_SPLITS, NEW_USER_ID
from recdistill.serving.fold_in import DEFAULT_RIDGE
from recdistill.serving.manifest import MANIFEST_FILE, is_export, write_manifest
from recdistill.serving.onnx_check import check_export
from recdistill.serving.onnx_scorer import ITEM_VECTORS_FILE, MODEL_FILE, STATE_FILE, OnnxScorer
from recdistill.serving.run_source import RunRole, open_run
from recdistill.serving.scorers import SequenceScores, StateScores, TorchScorer, UserScores, serving_kind, vector_tables
from recdistill.utils import runinfo

log = logging.getLogger(__name__)

#: Packages of the `export` extra: the dynamo exporter needs onnx and onnxscript, the check onnxruntime.
EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
#: Loggers of the exporter and its graph optimiser, quiet during an export.
_EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")

_SCORES = "(batch, n_items) float32; column j scores internal item j (row j of items.parquet)"
_SEQ = ("(batch, length) int64: internal item id + 1 of the user's latest items, oldest first, left-padded "
        "with 0; length 1..max_length")


def require_export_packages() -> None:
    """DependencyError with the pip command when a package of the `export` extra is missing."""
    missing = [name for name in EXPORT_PACKAGES if util.find_spec(name) is None]
    if missing:
        raise DependencyError(f"export needs {', '.join(missing)}: pip install 'recdistill[export]'")


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporter's notices (skipped torchvision ops, optimiser passes, torch's own deprecations)
    out of the user's console; errors still show."""
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_graph(module: nn.Module, example: tuple[torch.Tensor, ...], inputs: dict[str, dict[int, str]],
                 path: Path, max_length: int | None = None, model_name: str = "model") -> int:
    """Write `module` as ONNX to `path` with dynamo; `inputs` names each input and its dynamic axes
    (axis -> name; "length" runs 1..max_length). Returns the ONNX opset. A graph the exporter cannot
    convert is a RecdistillError naming `model_name` (the PyTorch path still serves it)."""
    dims = {"batch": torch.export.Dim("batch")}
    if max_length is not None:
        dims["length"] = torch.export.Dim("length", min=1, max=max_length)
    dynamic = {name: {axis: dims[dim] for axis, dim in axes.items()} for name, axes in inputs.items()}
    try:
        with _quiet_exporter():
            program = torch.onnx.export(module.eval(), example, dynamo=True, input_names=list(inputs),
                                        output_names=["scores"], dynamic_shapes=dynamic, verbose=False)
    except torch.onnx.OnnxExporterError as error:
        operator = re.search(r"target=(torch\.ops\.[\w.]+)", str(error))
        reason = f"it fails on {operator.group(1)}" if operator else str(error).strip().splitlines()[0][:200]
        raise RecdistillError(f"torch's ONNX exporter cannot convert model {model_name!r} with a dynamic batch"
                              f"{' and history length' if max_length else ''} ({reason}); serve it from "
                              "the run folder instead: `recdistill recommend RUN_DIR ...` reads the checkpoint "
                              "with PyTorch") from error
    program.save(str(path))
    return int(program.model.opset_imports.get("", 0))


def write_graphs(run: RunRole, kind: str, folder: Path) -> dict[str, Any]:
    """The ONNX graphs (and, for dot-product models, the fold-in's item vectors) of `run`'s model in
    `folder`; returns the manifest's description of their inputs and outputs."""
    model, shape = run.model, run.model.shape
    if kind == "sequence":
        length = shape.max_length
        example = run.catalog().sequences(np.arange(min(2, shape.n_users)), length)  # (2, L) real histories
        opset = export_graph(SequenceScores(model), (torch.from_numpy(example),), {"seq": {0: "batch", 1: "length"}},
                             folder / MODEL_FILE, length, model.config.name)
        return {"opset": opset, MODEL_FILE: {"inputs": {"seq": _SEQ}, "outputs": {"scores": _SCORES}}}
    users, items = vector_tables(model)  # (U, D), (I, D)
    np.save(folder / ITEM_VECTORS_FILE, items.numpy())
    opset = export_graph(UserScores(users, items), (torch.arange(2) % shape.n_users,), {"user": {0: "batch"}},
                         folder / MODEL_FILE, model_name=model.config.name)
    export_graph(StateScores(items), (users[:2].clone(),), {"state": {0: "batch"}}, folder / STATE_FILE,
                 model_name=model.config.name)
    return {"opset": opset,
            MODEL_FILE: {"inputs": {"user": "(batch,) int64: internal user id (row of users.parquet)"},
                         "outputs": {"scores": _SCORES}},
            STATE_FILE: {"inputs": {"state": "(batch, dim) float32: a user vector, e.g. folded in"},
                         "outputs": {"scores": _SCORES}},
            ITEM_VECTORS_FILE: "(n_items, dim) float32: item vectors, row j = internal item j"}


def destination(run: RunRole, out: str | Path | None) -> Path:
    """Where the export goes (default RUN_DIR/export/ROLE); ConfigError for a folder that holds
    something other than an export (an earlier export is replaced)."""
    path = Path(out).expanduser().resolve() if out is not None else run.run_dir / "export" / run.role
    if path.exists() and not (path.is_dir() and (is_export(path) or not any(path.iterdir()))):
        raise ConfigError(f"--out {path} exists and is not an export folder; choose a new or empty folder "
                          "(an earlier export is replaced)")
    return path


def _replace_folder(staging: Path, path: Path) -> None:
    """Move the finished `staging` folder to `path`, replacing an earlier export there."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.replaced-{os.getpid()}")
        os.replace(path, old)
    os.replace(staging, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_versions() -> dict[str, Any]:
    """Package versions at export time, the export packages included, and the git revision."""
    versions = runinfo.package_versions()
    for name in EXPORT_PACKAGES:
        versions[name] = metadata.version(name)
    return {**versions, "git": runinfo.git_revision()}


def manifest_of(run: RunRole, kind: str, graphs: dict[str, Any], check: dict[str, Any], folder: Path,
                seconds: float) -> dict[str, Any]:
    """The manifest (see `recdistill.serving.manifest`)."""
    shape, info = run.model.shape, run.metrics["run"]
    serving: dict[str, Any] = {"kind": kind, "n_users": shape.n_users, "n_items": shape.n_items,
                               "max_length": shape.max_length, "dim": int(run.model.hidden_dim), "graphs": graphs}
    if kind == "dot_product":
        serving["fold_in"] = {"method": "ridge regression of 1 on the history's item vectors: "
                                        "p = (V^T V + ridge I)^-1 V^T 1, float64, scored in float32",
                              "ridge": DEFAULT_RIDGE}
    return {
        "role": run.role, "model": asdict(run.model.config), "serving": serving,
        "history": {"splits": list(HISTORY_SPLITS), "order": "time",
                    "statement": "a known user's history is every interaction of the run's split, train + valid + "
                                 "test, in time order; sequence models read its latest max_length items, and every "
                                 "item in it is a seen item, excluded from recommendations by default",
                    "n_interactions": int(len(run.catalog().history.items))},
        "ties": {"seed": int(run.cfg.seed), "new_user_id": NEW_USER_ID,
                 "rule": "equal scores are ordered by a hash of (seed, raw user id, raw item id), larger first "
                         "(recdistill.data.tie_keys.TieKeys); a new user is hashed as raw user id new_user_id"},
        "files": {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name != MANIFEST_FILE},
        "check": check,
        "source": {"run_dir": str(run.run_dir), "checkpoint": str(run.checkpoint), "cache_key": run.key,
                   **{k: info.get(k) for k in ("experiment", "seed", "split_key", "data_fingerprint", "git",
                                               "versions")},
                   "test_metrics": run.metrics[run.role].get("test")},
        "protocol": info.get("protocol"),
        "versions": export_versions(),
        "export_seconds": seconds,
    }


def export_run(run_dir: str | Path, role: str = "student_kd", out: str | Path | None = None,
               cache_dir: str | Path | None = None) -> Path:
    """Export `role` of the run in `run_dir` into `out` (default RUN_DIR/export/ROLE), check it with
    onnxruntime, and return the folder (see the module docstring)."""
    require_export_packages()
    started = time.perf_counter()
    run = open_run(run_dir, role, cache_dir)
    kind = serving_kind(run.model)
    path = destination(run, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        catalog = run.catalog()
        catalog.write(staging)
        log.info("export: %s (%s, %s) to ONNX", role, run.model.config.name, kind)
        graphs = write_graphs(run, kind, staging)
        users = run.data.lists.eval_users("test").numpy()
        check = check_export(TorchScorer(run.model), OnnxScorer(staging, kind), catalog, users,
                             run.model.shape.max_length, DEFAULT_RIDGE)
        write_manifest(staging, manifest_of(run, kind, graphs, check, staging, time.perf_counter() - started))
        _replace_folder(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("export: %s written in %.1f s (max |onnx - torch| %.1e, top-10 lists identical on %d test users)",
             path, time.perf_counter() - started, check["max_abs_diff"], check["n_users"])
    return path
