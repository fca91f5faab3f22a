"""Run recdistill's CLI on a corpus of bad inputs and print a Markdown table of what a user sees.

Each case is one `recdistill` command in a fresh folder with its own cache (synthetic data, debug
trainers, seconds per run): the exit code and the first line of the message (`error: ...` from
recdistill, or the sweep summary's status line). Checkpoint cases first train a tiny run, then
replace a cached file with a crafted pickle that would create a marker file when unpickled.

    python scripts/bad_inputs.py [--only SUBSTRING] > table.md
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CLI = [sys.executable, "-c", "from recdistill.cli import main; main()"]
KD = ["train", "+experiment=synthetic_kd", "device=cpu"]
RANK = ["train", "+experiment=synthetic_rank_kd", "device=cpu"]

# (what, arguments)
CASES: list[tuple[str, list[str]]] = [
    ("negative learning rate", KD + ["trainer.student.lr=-1"]),
    ("NaN learning rate", KD + ["trainer.teacher.lr=nan"]),
    ("zero epochs", KD + ["trainer.student.epochs=0"]),
    ("zero batch size", KD + ["trainer.student.batch_size=0"]),
    ("history length 0", RANK + ["evaluator.history_length=0"]),
    ("cut-off K = 0", RANK + ["evaluator.ks=[0]"]),
    ("ratios not summing to 1", KD + ["split.ratios=[0.5,0.1,0.1]"]),
    ("dropout above 1", KD + ["student.dropout=1.5"]),
    ("infinite distillation weight", KD + ["distill.terms.soft.weight=inf"]),
    ("heads not dividing dim", RANK + ["teacher.n_heads=5"]),
    ("negative seed", KD + ["seed=-1"]),
    ("unknown task", KD + ["task=ctr"]),
    ("misspelt key", KD + ["trainer.student.lrr=1"]),
    ("appended unknown key", KD + ["+split.support_size=3"]),
    ("unknown option", KD + ["distill=hybird"]),
    ("wrong type", KD + ["trainer.student.epochs=many"]),
    ("model of another task", KD + ["student=sasrec_small"]),
    ("task switched, models not", KD + ["task=ranking"]),
    ("unknown duplicates policy", RANK + ["dataset.duplicates=sometimes"]),
    ("device=gpu", KD[:-1] + ["device=gpu"]),
    ("device=cuda without CUDA", KD[:-1] + ["device=cuda"]),
    ("device=cuda:7", KD[:-1] + ["device=cuda:7"]),
    ("device=mps without MPS", KD[:-1] + ["device=mps"]),
    ("sweep, one job fails", ["train", "-m", *KD[1:], "split.ratios=[0.8,0.1,0.1],[0.5,0.1,0.1]"]),
    ("sweep, every job fails", ["train", "-m", *KD[1:], "trainer.student.lr=-1,-2"]),
]


def run(arguments: list[str], folder: Path) -> tuple[int, str, float]:
    env = {**os.environ, "RECDISTILL_CACHE_DIR": str(folder / "cache"), "OMP_NUM_THREADS": "1",
           "COLUMNS": "1000"}  # rich wraps log lines at the terminal width: keep each message on one line
    start = time.perf_counter()
    done = subprocess.run(CLI + arguments, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    first = next((line for line in lines if line.startswith("error:")), None)
    logged = [line.split("ERROR", 1)[1].strip() for line in lines if " ERROR " in f" {line} "]
    if first is None and logged:
        first = logged[0]  # a run's own error, logged to the console (and run.log) before exit 2
    if first is None:
        summary = [line for line in lines if "sweep" in line.lower() and "failed" in line.lower()]
        first = summary[-1] if summary else (lines[-1] if lines else "")
    return done.returncode, first, seconds


class MakesMarker:
    """Unpickling this creates the folder `marker`: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def checkpoint_cases(folder: Path) -> list[tuple[str, int, str, float, bool]]:
    """Train once, then plant a crafted pickle in the model cache / the run folder and run again."""
    rows = []
    code, first, seconds = run(KD + ["hydra.run.dir=run"], folder)
    assert code == 0, f"the clean run failed: {first}"
    targets = {
        "crafted model checkpoint in the model cache": sorted((folder / "cache").rglob("*.pt")),
        "crafted teacher knowledge in the run folder": sorted((folder / "run").rglob("teacher_knowledge.pt")),
    }
    for what, paths in targets.items():
        if not paths:
            rows.append((what, -1, "no such file to replace", 0.0, False))
            continue
        marker = folder / f"marker-{len(rows)}"
        original = paths[0].read_bytes()
        torch.save({"config": {"name": "x"}, "state_dict": {}, "payload": MakesMarker(marker)}, paths[0])
        for metrics in (folder / "run").rglob("metrics.json"):
            metrics.unlink()  # so the run does not skip as complete
        code, first, seconds = run(KD + ["hydra.run.dir=run"], folder)
        rows.append((what, code, first, seconds, marker.exists()))
        paths[0].write_bytes(original)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = parser.parse_args()
    print("| case | command (after `recdistill`) | exit | first line | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for what, arguments in CASES:
        if args.only not in what:
            continue
        with tempfile.TemporaryDirectory() as folder:
            code, first, seconds = run(arguments, Path(folder))
        shown = " ".join(arguments).replace("|", "\\|")
        print(f"| {what} | `{shown}` | {code} | {first.replace('|', '/')[:220]} | {seconds:.1f} |", flush=True)
    if args.only in "checkpoint":
        with tempfile.TemporaryDirectory() as folder:
            for what, code, first, seconds, ran_code in checkpoint_cases(Path(folder)):
                note = " (code ran!)" if ran_code else ""
                print(f"| {what} | `{' '.join(KD)}` again | {code} | {first[:220]}{note} | {seconds:.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
