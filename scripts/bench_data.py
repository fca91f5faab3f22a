"""Benchmark the data path on real data: load -> split -> the tensors each task reads, per split and task.

    python scripts/bench_data.py                                   # MovieLens-1M, both splits, both tasks
    python scripts/bench_data.py --dataset movielens_100k --splits leave_one_out --tasks ranking

Each (split, task) runs in a fresh spawned process with a warm cache: the download is fetched and
verified first (in the parent), and no split is cached (make_split is called directly, nothing is
written). The stages are those of `RankingTask.prepare` / `RatingTask.prepare`:
    import   numpy, pandas, torch and the recdistill modules the stages use
    load     load_dataset (read + verify the cache marker, checks, rating scale, duplicates, filter)
    split    make_split
    tensors  ranking: check_no_masked_repeats, TieKeys and RankingData (per-user lists, train keys);
             rating: build_split_data and build_user_rows (training sequences and evaluation windows)
Times are wall clock. Memory is the process's peak resident set (resource.getrusage ru_maxrss)
after each stage, so it includes the interpreter and the imported libraries.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from rich.console import Console
from rich.table import Table

SPLITS = {"leave_one_out": {"name": "leave_one_out"},
          "chrono_ratio": {"name": "chrono_ratio", "ratios": [0.8, 0.1, 0.1]}}
TASKS = ("ranking", "rating")
HISTORY = {"ranking": 50, "rating": 32}  # evaluator.history_length of configs/evaluator/<task>.yaml
TARGET_S, TARGET_MB = 20.0, 2048.0  # the budget for one dataset on a 2-core machine


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(dataset: str, cache_dir: str, split: str, task: str, seed: int) -> dict[str, Any]:
    """Run the stages once in this (fresh) process; return {stage: (seconds, peak MiB)} and sizes."""
    stages: dict[str, tuple[float, float]] = {}
    start = time.perf_counter()
    # imported here, not at the top, so that their cost is measured in the fresh process
    from recdistill.data.batching import FIVE_STARS, build_split_data, build_user_rows
    from recdistill.data.loading import load_dataset
    from recdistill.data.ranking_data import RankingData
    from recdistill.data.splits import make_split
    from recdistill.data.tie_keys import TieKeys
    from recdistill.tasks.ranking import check_no_masked_repeats

    def lap(name: str) -> None:
        nonlocal start
        stages[name] = (time.perf_counter() - start, peak_rss_mb())
        start = time.perf_counter()

    lap("import")
    data = load_dataset({"name": dataset, "cache_dir": cache_dir}, seed=seed)
    lap("load")
    parts = make_split(data.interactions, SPLITS[split], seed, items=data.items)
    lap("split")
    frames = {"train": parts.train, "valid": parts.valid, "test": parts.test}
    if task == "ranking":
        check_no_masked_repeats(parts)
        RankingData(frames, data.n_users, data.n_items, HISTORY[task], TieKeys(seed, data.user_ids, data.item_ids))
    else:
        _, windows = build_split_data(frames, HISTORY[task], scale=data.rating_scale or FIVE_STARS)
        {name: build_user_rows(w) or w for name, w in windows.items()}
    lap("tensors")
    sizes = {"interactions": len(data.interactions), "users": data.n_users, "items": data.n_items,
             **{name: len(frame) for name, frame in frames.items()}}
    return {"stages": stages, "sizes": sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens_1m", help="a dataset name (default %(default)s)")
    parser.add_argument("--cache-dir", default="~/.cache/recdistill", help="cache folder (default %(default)s)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from recdistill.data.readers.registry import dataset_config, get_reader

    reader = get_reader(args.dataset)
    if reader.fetchable:  # warm the cache: download and verify now, so no measured stage downloads
        print(reader.fetch(dataset_config({"name": args.dataset, "cache_dir": args.cache_dir})))
    jobs = [(split, task) for split in args.splits for task in args.tasks]
    spawn = multiprocessing.get_context("spawn")
    results = {}
    for split, task in jobs:  # one at a time, each in a new interpreter: a fresh peak and no warm caches
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            results[split, task] = pool.submit(measure, args.dataset, args.cache_dir, split, task, args.seed).result()

    sizes = next(iter(results.values()))["sizes"]
    table = Table(title=f"{args.dataset}: {sizes['interactions']:,} interactions, {sizes['users']:,} users, "
                        f"{sizes['items']:,} items (seconds; peak RSS MiB after the stage)")
    for column in ("split", "task", "import", "load", "split s", "tensors", "total", "peak RSS", "within target"):
        table.add_column(column, justify="left" if column in ("split", "task") else "right")
    for (split, task), result in results.items():
        stages = result["stages"]
        total = sum(seconds for seconds, _ in stages.values())
        peak = max(mb for _, mb in stages.values())
        table.add_row(split, task, *(f"{stages[s][0]:.2f}" for s in ("import", "load", "split", "tensors")),
                      f"{total:.2f}", f"{peak:,.0f}", "yes" if total < TARGET_S and peak < TARGET_MB else "NO")
    Console(width=120).print(table)
    for (split, task), result in results.items():
        stages, sizes = result["stages"], result["sizes"]
        print(f"{split}/{task}: train {sizes['train']:,}, valid {sizes['valid']:,}, test {sizes['test']:,}; "
              "peak RSS after " + ", ".join(f"{s} {mb:,.0f}" for s, (_, mb) in stages.items()))


if __name__ == "__main__":
    main()
