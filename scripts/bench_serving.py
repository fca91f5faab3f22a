"""Serving benchmark: top-10 latency and throughput of a run's roles, PyTorch (the checkpoint) vs
onnxruntime (the export), on one CPU thread.

    python scripts/bench_serving.py RUN_DIR [RUN_DIR...]
    python scripts/bench_serving.py RUN_DIR --roles teacher,student_kd --backends torch,onnx --out bench_serving.json

For each run folder, role and backend (every role opened once, the same users for all of them):
- single-user latency p50/p99 of `Recommender.recommend(user=..., k=10)`, the whole answer of one
  request: id lookup, scores over the whole catalogue, seen items masked, top-10 under the tie rule,
  raw ids and titles; `--requests` known users sampled with a fixed seed. Sequence models read
  max_length (50) history items: only users with at least that many are sampled (all users when
  none has). `score p50` is the scorer call alone (the model), without masking and top-k;
- throughput in users/s at batch 1, 64 and 1024 (`--batches`) of `Recommender.rank_users`: one scorer
  call and one top-k for the whole batch (no loop per user), batch size / median time of a call,
  repeated for at least `--seconds`;
  `model users/s` is the scorer call alone at the largest batch (masking and top-k over the whole
  catalogue cost the same for every model, and bound a matrix factorisation's end-to-end speed-up).
The ONNX backend reads RUN_DIR/export/ROLE when it holds an export of that role, else exports there
(or under `--export-dir`), which checks the export against the checkpoint first. Roles whose
checkpoint is gone (a cleaned model cache) or that have no ONNX form are reported and skipped.
Prints a markdown table and the issue's targets (student p50 under 1 ms; student throughput at batch
1024 at least 10x the teacher's) and writes every figure to `--out` as JSON, with the machine's load
average before and after: other processes on the cores make every figure slower and noisier.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from recdistill.errors import RecdistillError
from recdistill.serving.export import export_run
from recdistill.serving.manifest import is_export, read_manifest
from recdistill.serving.recommend import Recommender
from recdistill.serving.run_source import MODEL_ROLES, read_metrics

BACKENDS = ("torch", "onnx")
console = Console()


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p99 and mean of per-call times, in milliseconds."""
    ms = np.asarray(seconds) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean())}


def timed_calls(call: Callable[[Any], Any], inputs: list[Any], warmup: int = 5) -> list[float]:
    """Seconds of `call(x)` for each x of `inputs`, after `warmup` untimed calls."""
    for x in inputs[:warmup]:
        call(x)
    times = []
    for x in inputs:
        start = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - start)
    return times


def users_per_second(call: Callable[[np.ndarray], Any], batches: list[np.ndarray], seconds: float,
                     min_calls: int = 3) -> float:
    """Users per second of `call(batch)`: batch size / the median time of one call, cycling over
    `batches` (same size) for at least `seconds` and `min_calls` calls after one untimed call. The
    median, not the mean, so that calls the OS preempts for other processes do not set the figure."""
    call(batches[0])
    times, start = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        began = time.perf_counter()
        call(batches[len(times) % len(batches)])
        times.append(time.perf_counter() - began)
    return len(batches[0]) / float(np.median(times))


def open_export(run_dir: Path, role: str, export_dir: Path | None, cache_dir: str | None) -> Path:
    """An export folder of `role`: RUN_DIR/export/ROLE (or export_dir/RUN/ROLE) when it holds one, else a new export."""
    folder = (export_dir / run_dir.name / role) if export_dir is not None else run_dir / "export" / role
    if is_export(folder) and read_manifest(folder)["role"] == role:
        return folder
    console.print(f"  exporting {role} of {run_dir} to {folder} (checked against the checkpoint)")
    return export_run(run_dir, role, out=folder, cache_dir=cache_dir)


def latency_users(recommender: Recommender, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` known users (internal ids); for sequence models users with a history of at least max_length items."""
    lengths = np.diff(recommender.catalog.history.indptr.numpy())  # (U,) history items per user
    pool = np.arange(recommender.catalog.n_users)
    if recommender.kind == "sequence" and (lengths >= recommender.max_length).any():
        pool = pool[lengths >= recommender.max_length]
    return rng.choice(pool, n, replace=n > len(pool))


def measure(recommender: Recommender, users: np.ndarray, batches: dict[int, list[np.ndarray]], k: int,
            seconds: float) -> dict[str, Any]:
    """Latency of single-user requests over `users` and throughput at each batch size."""
    raw = [str(recommender.catalog.user_ids[u]) for u in users]
    single = timed_calls(lambda user: recommender.recommend(user=user, k=k), raw)
    scores = timed_calls(lambda u: recommender.known_user_scores(np.array([u])), list(users))
    throughput = {str(size): users_per_second(lambda b: recommender.rank_users(b, k), group, seconds)
                  for size, group in batches.items()}
    model_only = {str(size): users_per_second(recommender.known_user_scores, group, seconds)
                  for size, group in batches.items()}
    return {"latency_ms": percentiles(single), "score_latency_ms": percentiles(scores),
            "users_per_second": throughput, "score_users_per_second": model_only}


def bench_run(run_dir: Path, roles: list[str], backends: list[str], options: argparse.Namespace
              ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(results, skipped) of every role and backend of one run folder."""
    metrics = read_metrics(run_dir)
    info = metrics["run"]
    label = f"{info.get('experiment')} ({info['config']['dataset']['name']})"
    results, skipped = [], []
    rng = np.random.default_rng(options.seed)
    users = batches = None
    for role in roles:
        if role not in metrics:
            skipped.append({"run": str(run_dir), "role": role, "reason": "not a role of this run"})
            continue
        try:
            checkpoint = Recommender.open(run_dir, role, options.cache_dir)
        except RecdistillError as error:
            skipped.append({"run": str(run_dir), "role": role, "reason": str(error)})
            console.print(f"  [yellow]skipped {role}: {error}")
            continue
        model = checkpoint.scorer.model
        if users is None:  # the same users for every role and backend of the run
            n_users = checkpoint.catalog.n_users
            users = latency_users(checkpoint, options.requests, rng)
            batches = {size: [rng.choice(n_users, size, replace=size > n_users) for _ in range(4)]
                       for size in options.batches}
        described = {"run": str(run_dir), "label": label, "model": model.config.name, "role": role,
                     "kind": checkpoint.kind, "params": int(sum(p.numel() for p in model.parameters())),
                     "dim": int(model.hidden_dim), "n_items": checkpoint.catalog.n_items,
                     "n_users": checkpoint.catalog.n_users,
                     "history_length": checkpoint.max_length if checkpoint.kind == "sequence" else None}
        for backend in backends:
            try:
                recommender = checkpoint if backend == "torch" else Recommender.open(
                    open_export(run_dir, role, options.export_dir, options.cache_dir), threads=1)
            except RecdistillError as error:
                skipped.append({"run": str(run_dir), "role": role, "backend": backend, "reason": str(error)})
                console.print(f"  [yellow]skipped {role} {backend}: {error}")
                continue
            console.print(f"  {label} {role} {backend}")
            results.append({**described, "backend": backend,
                            **measure(recommender, users, batches, options.k, options.seconds)})
    return results, skipped


def targets(results: list[dict[str, Any]], largest: int) -> list[dict[str, Any]]:
    """The issue's targets per run and backend: student p50 < 1 ms; student users/s at the largest
    batch >= 10x the teacher's."""
    checks = []
    for row in results:
        if row["role"] == "teacher":
            continue
        check = {"run": row["run"], "role": row["role"], "backend": row["backend"],
                 "p50_ms": row["latency_ms"]["p50"], "p50_under_1ms": row["latency_ms"]["p50"] < 1.0}
        teacher = [t for t in results if t["run"] == row["run"] and t["backend"] == row["backend"]
                   and t["role"] == "teacher"]
        if teacher:
            ratio = row["users_per_second"][str(largest)] / teacher[0]["users_per_second"][str(largest)]
            model = row["score_users_per_second"][str(largest)] / teacher[0]["score_users_per_second"][str(largest)]
            check.update({"batch": largest, "speedup_vs_teacher": ratio, "speedup_at_least_10x": ratio >= 10,
                          "model_speedup_vs_teacher": model})
        checks.append(check)
    return checks


def markdown(results: list[dict[str, Any]], sizes: list[int]) -> str:
    """The results as one markdown table."""
    head = ["run", "model", "role", "params", "backend", "p50 ms", "p99 ms", "score p50 ms",
            *(f"users/s @{size}" for size in sizes), f"model users/s @{max(sizes)}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|"]
    for row in results:
        model = f"{row['model']} d{row['dim']}"
        cells = [row["label"], model, row["role"], f"{row['params']:,}", row["backend"],
                 f"{row['latency_ms']['p50']:.2f}", f"{row['latency_ms']['p99']:.2f}",
                 f"{row['score_latency_ms']['p50']:.2f}",
                 *(f"{row['users_per_second'][str(size)]:,.0f}" for size in sizes),
                 f"{row['score_users_per_second'][str(max(sizes))]:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("torch", "onnxruntime", "numpy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="folders written by `recdistill train`")
    parser.add_argument("--roles", default="teacher,student_kd", help="comma-separated roles (default %(default)s)")
    parser.add_argument("--backends", default="torch,onnx", help="torch (checkpoint), onnx (export); default both")
    parser.add_argument("--batches", default="1,64,1024", help="throughput batch sizes (default %(default)s)")
    parser.add_argument("-k", type=int, default=10, help="list length (default %(default)s)")
    parser.add_argument("--requests", type=int, default=300, help="single-user requests timed (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=1.0, help="least time per throughput figure (default 1 s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sampled users")
    parser.add_argument("--cache-dir", help="the model cache holding teacher and student (default: each run's)")
    parser.add_argument("--export-dir", type=Path, help="exports go to DIR/RUN/ROLE (default RUN_DIR/export/ROLE)")
    parser.add_argument("--out", type=Path, default=Path("bench_serving.json"), help="JSON file (default %(default)s)")
    options = parser.parse_args()
    options.batches = [int(size) for size in options.batches.split(",")]
    roles = [role for role in options.roles.split(",") if role]
    backends = [backend for backend in options.backends.split(",") if backend]
    for name, given, valid in (("--roles", roles, MODEL_ROLES), ("--backends", backends, BACKENDS)):
        if not given or set(given) - set(valid):
            parser.error(f"{name} {','.join(given)}: valid values are {', '.join(valid)}")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(1)  # one CPU thread: torch here, onnxruntime through Recommender.open(threads=1)
    torch.set_num_interop_threads(1)

    load_before = os.getloadavg()  # other processes on the machine make every figure slower
    results, skipped = [], []
    for run_dir in options.runs:
        console.print(f"[bold]{run_dir}")
        found, missed = bench_run(run_dir.expanduser().resolve(), roles, backends, options)
        results += found
        skipped += missed
    checks = targets(results, max(options.batches))
    report = {"settings": {"threads": 1, "k": options.k, "batches": options.batches, "requests": options.requests,
                           "min_seconds": options.seconds, "seed": options.seed, "cpu": platform.processor()
                           or platform.machine(), "cpu_count": os.cpu_count(),
                           "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
                           "versions": versions()},
              "results": results, "targets": checks, "skipped": skipped}
    options.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown(results, options.batches))
    for check in checks:
        speed = (f"; users/s at batch {check['batch']}: {check['speedup_vs_teacher']:.1f}x the teacher's "
                 f"({'meets' if check['speedup_at_least_10x'] else 'misses'} >= 10x; the model alone "
                 f"{check['model_speedup_vs_teacher']:.1f}x)" if "batch" in check else "")
        print(f"{Path(check['run']).name} {check['role']} {check['backend']}: p50 {check['p50_ms']:.2f} ms "
              f"({'meets' if check['p50_under_1ms'] else 'misses'} < 1 ms){speed}")
    for miss in skipped:
        print(f"skipped {Path(miss['run']).name} {miss['role']} {miss.get('backend', '')}: {miss['reason']}")
    print(f"{os.cpu_count()} CPUs, load average (1 min) {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"wrote {options.out}")


if __name__ == "__main__":
    main()
