"""Keep the evidence behind a README table: each finished run's metrics.json and its per-user metrics.

A study's run folders also hold checkpoints, saved knowledge and top-K lists (hundreds of MB on
ML-1M); `recdistill compare` needs only metrics.json (results, config, split key) and
per_user.parquet (one row per role and user). This copies those two files of every finished run
below the given folders into OUT/<folder name>/<the run's path below that folder>, with
per_user.parquet cut to the metrics named (every metric when none is named). OUT can then stand in
for the run folders:

    python scripts/keep_results.py /root/runs/sasrec_seeds_c --into scripts/results/ml1m_sasrec \
        --metric ndcg@10 --metric recall@10
    recdistill compare scripts/results/ml1m_sasrec --metric ndcg@10 --metric recall@10

Per-user metrics are numbers computed by recdistill, not the data set; user ids are the split's
internal indices. A run folder holding only one of the two files (failed or unfinished) is skipped and
named; runs kept earlier in OUT are left as they are.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

from recdistill.utils.atomic import atomic_path, write_parquet


def cut(run: Path, metrics: list[str]) -> pd.DataFrame:
    """The run's per-user table, cut to `metrics` (all columns when empty).

    Raises KeyError naming the run when a requested metric is not among its per-user metrics."""
    table = pd.read_parquet(run / "per_user.parquet")
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        have = sorted(c for c in table.columns if c not in ("role", "user"))
        raise KeyError(f"{run}: per_user.parquet has no {missing}; its metrics are {have}")
    return table[["role", "user", *metrics]] if metrics else table


def keep(run: Path, table: pd.DataFrame, target: Path) -> int:
    """Write one run's metrics.json and its (cut) per-user `table` under `target`; returns the bytes written."""
    target.mkdir(parents=True, exist_ok=True)
    with atomic_path(target / "metrics.json") as tmp:
        shutil.copyfile(run / "metrics.json", tmp)
    write_parquet(target / "per_user.parquet", table)
    return sum(f.stat().st_size for f in target.iterdir())


def finished_runs(folder: Path) -> list[Path]:
    """The runs at or below `folder` holding both files; names on stderr those holding only one."""
    if not folder.is_dir():
        sys.exit(f"{folder}: no such folder")
    runs = []
    for run in sorted({p.parent for name in ("metrics.json", "per_user.parquet") for p in folder.rglob(name)}):
        lacking = [name for name in ("metrics.json", "per_user.parquet") if not (run / name).exists()]
        if lacking:
            print(f"skipped {run}: no {lacking[0]} (unfinished or failed)", file=sys.stderr)
        else:
            runs.append(run)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="run folders or sweep folders")
    parser.add_argument("--into", type=Path, required=True, help="where the kept files go")
    parser.add_argument("--metric", action="append", default=[], help="per-user metric to keep (repeatable)")
    args = parser.parse_args()
    planned = [(run, args.into / folder.name / run.relative_to(folder)) for folder in args.folders
               for run in finished_runs(folder)]
    if not planned:
        sys.exit(f"no finished run (metrics.json + per_user.parquet) below {[str(f) for f in args.folders]}")
    try:  # every table is cut before anything is written: a missing metric leaves no half-kept study
        tables = [cut(run, args.metric) for run, _ in planned]
    except KeyError as error:
        sys.exit(f"error: {error.args[0]}")
    for (run, target), table in zip(planned, tables):
        size = keep(run, table, target)
        print(f"{run} -> {target} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
