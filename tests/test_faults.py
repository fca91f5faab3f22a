"""A sweep killed with SIGKILL at any stage finishes, when the same command runs again, with the
metrics of an uninterrupted sweep, and leaves no unusable cache entry behind."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Two jobs, three epochs per role: enough to be killed inside each stage.
SWEEP = ["-m", "+experiment=synthetic_kd", "seed=0,1", "dataset.synthetic.n_users=80", "trainer.teacher.epochs=3",
         "trainer.student.epochs=3", "trainer.teacher.patience=3", "trainer.student.patience=3",
         "evaluator.latency_repeats=1", "device=cpu"]
#: Lines of the log at which the sweep is killed, in the order they appear: teacher training, the
#: student-alone baseline, the distilled student, evaluation.
KILL_AT = ("teacher epoch 2:", "student epoch 1:", "student_kd epoch 2:", "evaluate teacher")
#: Fields that measure time or speed, which no rerun reproduces.
TIMED = ("seconds", "latency_ms_median", "latency_ms_p90", "throughput_per_s", "stage_seconds", "history")


def command(sweep_dir: Path) -> list[str]:
    return [sys.executable, "-m", "recdistill.cli", "train", *SWEEP, f"hydra.sweep.dir={sweep_dir}"]


def environment(tmp_path: Path, cache: Path) -> dict:
    return {"RECDISTILL_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
            "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def run_until(args: list[str], env: dict, cwd: Path, marker: str | None, log: list[str]) -> bool:
    """Run `args`, appending its output lines to `log`; with `marker`, SIGKILL its whole process
    group as soon as a line holds it. Returns whether it was killed."""
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    for line in process.stdout:
        log.append(line)
        if marker is not None and marker in line:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
    assert process.wait(timeout=600) == 0, f"{args} failed:\n{''.join(log[-40:])}"
    return False


def comparable(value):
    """`value` without timings, latencies and the per-epoch history (wall-clock seconds)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in TIMED}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def results(sweep_dir: Path) -> dict[str, dict]:
    """Job folder name -> its metrics.json without timings and without the run block's keys that
    name where it ran (cache hits differ between a resumed and an uninterrupted sweep)."""
    found = {}
    for path in sorted(sweep_dir.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        metrics["run"] = {k: v for k, v in metrics["run"].items()
                          if k in ("protocol", "loss_formula", "teacher_key", "student_key", "split_key", "seed")}
        for role in metrics:
            if role != "run":
                metrics[role].get("training", {}).pop("from_cache", None)
        found[path.parent.name] = comparable(metrics)
    return found


@pytest.mark.slow
def test_a_sweep_killed_at_every_stage_resumes_to_the_metrics_of_an_uninterrupted_one(tmp_path):
    reference, killed, log = tmp_path / "reference", tmp_path / "killed", []
    run_until(command(reference), environment(tmp_path, tmp_path / "cache_reference"), tmp_path, None, [])
    env = environment(tmp_path, tmp_path / "cache_killed")
    for marker in KILL_AT:
        assert run_until(command(killed), env, tmp_path, marker, log), f"the sweep ended before {marker!r}"
    assert not run_until(command(killed), env, tmp_path, None, log)
    expected, got = results(reference), results(killed)
    assert len(expected) == 2 and got == expected
    # nothing finished is recomputed: each teacher's first epoch ran once over all five commands (the
    # synthetic data, and so the teacher, differ by seed), and later commands continued from saved state
    teachers = {re.search(r"training teacher (\w+)", line).group(1) for line in log if "training teacher" in line}
    assert len(teachers) == 2 and sum("teacher epoch 1:" in line for line in log) == len(teachers)
    assert any("resuming from" in line for line in log)
    for entry in (tmp_path / "cache_killed").rglob("*.pt"):  # every cache entry is whole
        torch.load(entry, map_location="cpu", weights_only=True)
