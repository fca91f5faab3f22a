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
internal indices. A run folder without metrics.json (failed or unfinished) is skipped and named.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

from recdistill.utils.atomic import atomic_path, write_parquet


def keep(run: Path, target: Path, metrics: list[str]) -> int:
    """Copy one run's metrics.json and its per-user table (cut to `metrics`); returns the bytes written.

    Raises KeyError naming the run when a requested metric is not among its per-user columns."""
    table = pd.read_parquet(run / "per_user.parquet")
    if metrics:  # checked before anything is written: no half-kept run
        missing = [m for m in metrics if m not in table.columns]
        if missing:
            raise KeyError(f"{run}: per_user.parquet has no {missing}; it has {sorted(table.columns)}")
        table = table[["role", "user", *metrics]]
    target.mkdir(parents=True, exist_ok=True)
    with atomic_path(target / "metrics.json") as tmp:
        shutil.copyfile(run / "metrics.json", tmp)
    write_parquet(target / "per_user.parquet", table)
    return sum(f.stat().st_size for f in target.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="run folders or sweep folders")
    parser.add_argument("--into", type=Path, required=True, help="where the kept files go")
    parser.add_argument("--metric", action="append", default=[], help="per-user metric to keep (repeatable)")
    args = parser.parse_args()
    kept = 0
    for folder in args.folders:
        for run in sorted({p.parent for p in folder.rglob("per_user.parquet")}):
            if not (run / "metrics.json").exists():
                print(f"skipped {run}: no metrics.json (unfinished or failed)", file=sys.stderr)
                continue
            relative = run.relative_to(folder)
            size = keep(run, args.into / folder.name / relative, args.metric)
            kept += 1
            print(f"{run} -> {args.into / folder.name / relative} ({size / 1024:.0f} KiB)")
    if not kept:
        sys.exit(f"no finished run (metrics.json + per_user.parquet) below {[str(f) for f in args.folders]}")


if __name__ == "__main__":
    main()
