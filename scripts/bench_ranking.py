"""Benchmark the top-K ranking models: training speed, time to the best epoch, evaluation
throughput and the evaluator's peak memory.

    python scripts/bench_ranking.py --dataset ml100k            # real ML-100K, full training runs
    python scripts/bench_ranking.py --dataset ml1m --models sasrec_large,sasrec_small,bpr_mf_large,bpr_mf_small
    python scripts/bench_ranking.py --dataset synthetic         # 100k users x 50k items x ~10M
    python scripts/bench_ranking.py --dataset synthetic --users 20000 --models sasrec_small,bpr_mf_small

For each model config (one process each, so CPU peak memory is that model's alone):
- train targets/s over `--steps` optimiser steps after a warm-up step, and the epoch time it implies
  (targets per epoch / targets per second; on ML-100K also measured over whole epochs);
- on ML-100K (`--full`, default there): a real training run with early stopping on validation
  NDCG@10 (trainer config `ranking`), reporting epochs, mean seconds per epoch and seconds until
  the best validation epoch;
- evaluation: full ranking of `--eval-users` test users over the whole catalogue with history
  masking, in users/s, and the evaluator's peak memory above the memory in use before it started
  (resident memory sampled every 5 ms on CPU; torch's peak allocation on CUDA).
The synthetic data and its split are cached under `--cache` so reruns skip the generation.
On ML-1M (`recdistill data fetch ml-1m` first) the models are configured as in the study
(`+experiment=movielens_1m_rank_kd` for matrix factorisations, `movielens_1m_rank_kd_sasrec` for SASRec)
and the split is its leave-one-out by time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.data.loading import load_dataset
from recdistill.data.ranking_data import RankingData
from recdistill.data.readers.movielens_1m import MovieLens1M
from recdistill.data.readers.movielens_100k import MovieLens100K
from recdistill.data.split_config import LeaveOneOutSplit
from recdistill.data.splits import load_split, make_split, save_split
from recdistill.data.synthetic import SyntheticConfig, generate_synthetic
from recdistill.evaluation.efficiency import training_throughput
from recdistill.evaluation.ranking_eval import full_ranking_topk
from recdistill.models.ranking_base import RankingShape
from recdistill.models.registry import build_model
from recdistill.tasks.base import no_distillation
from recdistill.tasks.ranking import RankingRun, RankingTask
from recdistill.utils.runinfo import resolve_device

#: (label, config group, option) of the models benchmarked by default.
MODELS = {"sasrec_large": ("teacher", "sasrec_large"), "sasrec_small": ("student", "sasrec_small"),
          "sasrec": ("teacher", "sasrec"), "gru4rec": ("teacher", "gru4rec"),
          "bpr_mf_large": ("teacher", "bpr_mf_large"), "bpr_mf_small": ("student", "bpr_mf_small"),
          "lightgcn": ("teacher", "lightgcn"), "popularity": ("teacher", "popularity"),
          "item_knn": ("teacher", "item_knn")}


def resident_mb() -> float:
    """Current resident memory of this process (Linux /proc), MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


class PeakMemory:
    """Peak memory above the starting point while the block runs: sampled RSS, or CUDA allocations."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self._stop = device, 0.0, threading.Event()

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.start = torch.cuda.memory_allocated(self.device) / 2**20
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.start = resident_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_mb() - self.start)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20 - self.start
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, resident_mb() - self.start)


def load_frames(args: argparse.Namespace) -> tuple[dict[str, pd.DataFrame], int, int]:
    """Leave-one-out frames of the benchmark dataset (synthetic ones cached on disk)."""
    if args.dataset in READERS:
        data = load_dataset(READERS[args.dataset].Config(cache_dir=str(args.cache)))
        split = make_split(data.interactions, LeaveOneOutSplit(), seed=0)
        return {"train": split.train, "valid": split.valid, "test": split.test}, data.n_users, data.n_items
    folder = args.cache / f"bench_synthetic_{args.users}x{args.items}x{args.per_user}"
    if not (folder / "split.json").exists():
        started = time.perf_counter()
        data = generate_synthetic(SyntheticConfig(n_users=args.users, n_items=args.items,
                                                  interactions_per_user=args.per_user), seed=0)
        save_split(make_split(data.interactions, LeaveOneOutSplit(), seed=0), folder)
        print(f"generated {len(data.interactions):,} interactions in {time.perf_counter() - started:.0f} s")
    split = load_split(folder)
    return {"train": split.train, "valid": split.valid, "test": split.test}, args.users, args.items


#: Real datasets the benchmark reads from the recdistill cache.
READERS = {"ml100k": MovieLens100K, "ml1m": MovieLens1M}


def experiment_of(dataset: str, option: str) -> str:
    """The experiment whose settings (history length, model sizes) the benchmark uses for a model."""
    if dataset != "ml1m":
        return "movielens_rank_kd"
    return "movielens_1m_rank_kd_sasrec" if option.startswith("sasrec") else "movielens_1m_rank_kd"


def compose_config(experiment: str, group: str, option: str):
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=[f"+experiment={experiment}", f"{group}={option}"])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_speed(model, data: RankingData, batch_size: int, steps: int, device: torch.device,
                   stride: int = 0) -> dict:
    """Targets/s over `steps` optimiser steps after one warm-up step (each target counted once,
    however many overlapping rows of `stride` read it)."""
    if model.input_kind == "none":
        return {}
    batches_of = data.training_batches(model.input_kind, batch_size, getattr(model.config, "n_negatives", 1),
                                       stride=stride)
    batches = batches_of.batches(None, device, torch.Generator().manual_seed(0), 0)
    speed = training_throughput(model, batches, steps, device, lambda batch: int(batch["n_targets"]))
    return {"train_targets_per_s": speed, "targets_per_epoch": len(batches_of),
            "epoch_s_estimated": len(batches_of) / speed}


def full_training(cfg, role: str, model, data: RankingData, frames, device: torch.device) -> dict:
    """A real early-stopped training run (the pipeline's loop and validation); epochs and timings."""
    run = RankingRun(data=None, split=None, split_key="bench", lists=data, shape=model.shape, candidates={})
    checkpoint_dir = Path(f"/tmp/recdistill-bench-{role}-{time.time_ns()}")
    summary = RankingTask(cfg, device).fit(model, no_distillation("ranking"), role, run, checkpoint_dir,
                                           seed=0)["training"]
    history = pd.DataFrame(summary.get("history", []))
    if history.empty:
        return {}
    best = int(summary["best_epoch"])
    return {"epochs": len(history), "epoch_s_measured": float(history["seconds"].mean()),
            "to_best_s": float(history.loc[history["epoch"] <= best, "seconds"].sum()), "best_epoch": best,
            "best_valid_ndcg@10": float(summary["best_valid"].get("ndcg@10", float("nan")))}


def measure(args: argparse.Namespace, label: str) -> dict:
    """Build the data and one model and benchmark it; runs in a child process."""
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    group, option = MODELS[label]
    cfg = compose_config(experiment_of(args.dataset, option), group, option)
    frames, n_users, n_items = load_frames(args)
    history = cfg.evaluator.history_length
    data = RankingData(frames, n_users, n_items, history)
    torch.manual_seed(0)
    model = build_model(cfg[group], RankingShape(n_users=n_users, n_items=n_items, max_length=history))
    started = time.perf_counter()
    model.fit(data.lists["train"])
    result: dict = {"params": sum(p.numel() for p in model.parameters()), "fit_s": time.perf_counter() - started,
                    "interactions": sum(len(f) for f in frames.values()), "device": str(device)}
    model.to(device)
    result.update(training_speed(model, data, args.batch_size, args.steps, device, args.stride))
    if args.full and model.input_kind != "none":
        role = "teacher" if group == "teacher" else "student"
        torch.manual_seed(0)
        model = build_model(cfg[group], model.shape)
        model.fit(data.lists["train"])
        result.update(full_training(cfg, role, model.to(device), data, frames, device))
    users = data.eval_users("test")[: args.eval_users]
    full_ranking_topk(model, data, "test", 10, users=users[:64], device=device)  # warm-up
    with PeakMemory(device) as memory:
        sync(device)
        start = time.perf_counter()
        full_ranking_topk(model, data, "test", 20, users=users, batch_size=args.user_batch,
                          item_chunk=args.item_chunk, device=device)
        sync(device)
        seconds = time.perf_counter() - start
    result.update(eval_users_per_s=len(users) / seconds, eval_users=len(users), eval_peak_mb=memory.peak)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=[*READERS, "synthetic"], default="ml100k")
    parser.add_argument("--users", type=int, default=100_000, help="synthetic users")
    parser.add_argument("--items", type=int, default=50_000, help="synthetic items")
    parser.add_argument("--per-user", type=int, default=100, help="synthetic mean interactions per user")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {list(MODELS)}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=2048, help="training targets per step")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--stride", type=int, default=0,
                        help="sequence models: trainer sequence_stride (0 = rows do not overlap)")
    parser.add_argument("--full", action=argparse.BooleanOptionalAction, default=None,
                        help="also train to early stopping (default: on for ml100k, off otherwise)")
    parser.add_argument("--eval-users", type=int, default=10_000, help="test users ranked in the timing")
    parser.add_argument("--user-batch", type=int, default=1024, help="users per scoring pass")
    parser.add_argument("--item-chunk", type=int, default=65_536, help="items per scoring chunk")
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/recdistill").expanduser())
    args = parser.parse_args()
    args.full = args.dataset == "ml100k" if args.full is None else args.full
    labels = [m for m in args.models.split(",") if m]
    unknown = [m for m in labels if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; valid: {list(MODELS)}")
    if args.dataset == "synthetic":
        load_frames(args)  # generate and cache once, before the per-model processes
    results = {}
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        for label in labels:
            results[label] = pool.submit(measure, args, label).result()
            print(label, results[label], flush=True)
    first = next(iter(results.values()))
    table = Table(title=f"ranking models on {first['device']}, {args.dataset}: {first['interactions']:,} "
                        f"interactions; evaluation: full ranking of {first['eval_users']:,} users")
    columns = ["model", "params", "fit s", "train targets/s", "epoch s (est.)", "epoch s (measured)", "epochs",
               "to best s", "best valid NDCG@10", "eval users/s", "eval peak MB"]
    for column in columns:
        table.add_column(column, justify="right")

    def cell(result: dict, key: str, spec: str) -> str:
        return format(result[key], spec) if key in result else "—"

    for label, result in results.items():
        table.add_row(label, f"{result['params']:,}", cell(result, "fit_s", ".1f"),
                      cell(result, "train_targets_per_s", ",.0f"), cell(result, "epoch_s_estimated", ",.1f"),
                      cell(result, "epoch_s_measured", ".1f"), cell(result, "epochs", "d"),
                      cell(result, "to_best_s", ",.0f"), cell(result, "best_valid_ndcg@10", ".4f"),
                      cell(result, "eval_users_per_s", ",.0f"), cell(result, "eval_peak_mb", ",.0f"))
    Console().print(table)


if __name__ == "__main__":
    main()
