"""Benchmark the rating models: training and scoring throughput, peak memory, per model config.

    python scripts/bench_rating.py                     # ML-100K-sized synthetic data, CPU or CUDA
    python scripts/bench_rating.py --users 20000 --items 10000 --per-user 100 --device cuda

Prints one row per model config (teacher and student of movielens_kd, and biased MF):
targets/s in training (forward + backward + step), targets/s in evaluation (one window per target,
and one row per user as the pipeline evaluates chronological splits), and peak memory. Each model
is measured in its own process, so CPU peak memory (max RSS) is that model's alone.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.data.batching import build_split_data, build_user_rows
from recdistill.data.split_config import ChronoRatioSplit
from recdistill.data.synthetic import SyntheticConfig
from recdistill.data.splits import make_split
from recdistill.data.synthetic import generate_synthetic
from recdistill.evaluation.efficiency import training_throughput
from recdistill.models.base import DataShape
from recdistill.models.registry import build_model
from recdistill.utils.runinfo import resolve_device


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or the process's peak resident memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def eval_speed(model, data, device, batch_size: int, limit: int) -> float:
    """Evaluation targets/s over the first batches holding about `limit` targets."""
    model.eval()
    targets = 0
    with torch.no_grad():
        sync(device)
        start = time.perf_counter()
        for batch in data.batches(batch_size, device):
            model(batch)
            targets += len(batch["label"])
            if targets >= limit:
                break
        sync(device)
    return targets / (time.perf_counter() - start)


def bench(model, train, windows, rows, device, batch_size: int, eval_batch_size: int, steps: int) -> dict:
    """Training targets/s over `steps` steps after one warm-up step, and evaluation targets/s."""
    model.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batches = train.batches(batch_size, device, torch.Generator().manual_seed(0))
    speed = training_throughput(model, batches, steps, device, lambda batch: len(batch["label"]))
    limit = 20 * eval_batch_size
    return {"train_targets_per_s": speed,
            "window_targets_per_s": eval_speed(model, windows, device, eval_batch_size, limit),
            "row_targets_per_s": eval_speed(model, rows, device, eval_batch_size, limit),
            "peak_mb": peak_memory_mb(device)}


def measure(args: argparse.Namespace, role: str) -> dict:
    """Build the data and one model (`role`) and benchmark it; runs in a child process."""
    device = resolve_device(args.device)
    torch.manual_seed(0)
    data = generate_synthetic(SyntheticConfig(n_users=args.users, n_items=args.items,
                                              interactions_per_user=args.per_user), seed=0)
    split = make_split(data.interactions, ChronoRatioSplit(), seed=0)
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="config", overrides=["+experiment=movielens_kd"])
    history = cfg.evaluator.history_length
    train, windows = build_split_data({"train": split.train, "valid": split.valid, "test": split.test}, history)
    shape = DataShape(n_users=data.n_users, n_items=data.n_items, history_length=history,
                      rating_mean=float(split.train["rating"].mean()))
    model_cfg = {"teacher": cfg.teacher, "student": cfg.student, "biased_mf": {"name": "biased_mf", "dim": 64}}[role]
    model = build_model(model_cfg, shape)
    result = bench(model, train, windows["test"], build_user_rows(windows["test"]), device, args.batch_size,
                   args.eval_batch_size, args.steps)
    return {"params": sum(p.numel() for p in model.parameters()), "interactions": len(data.interactions),
            "device": str(device), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=943)
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--per-user", type=int, default=106)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=2048, help="training targets per step")
    parser.add_argument("--eval-batch-size", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    roles = ("teacher", "student", "biased_mf")
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        results = {role: pool.submit(measure, args, role).result() for role in roles}
    first = results[roles[0]]
    table = Table(title=f"rating models on {first['device']}: {args.users} users, {args.items} items, "
                        f"{first['interactions']} interactions")
    for column in ("model", "params", "train targets/s", "eval targets/s (windows)", "eval targets/s (user rows)",
                   "peak MB"):
        table.add_column(column, justify="right")
    for role, result in results.items():
        table.add_row(role, f"{result['params']:,}", f"{result['train_targets_per_s']:,.0f}",
                      f"{result['window_targets_per_s']:,.0f}", f"{result['row_targets_per_s']:,.0f}",
                      f"{result['peak_mb']:,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
