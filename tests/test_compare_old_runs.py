"""`recdistill compare` still reads run folders written by earlier code.

tests/fixtures/runs_before_spine/ is a real multirun written before the run code was reorganised:

    recdistill train -m +experiment=synthetic_kd distill=hybrid,kl seed=0,1 hydra.sweep.dir=...

(commit a2095fd, jobs 0-3 = hybrid seed 0, hybrid seed 1, kl seed 0, kl seed 1), keeping only what compare reads:
metrics.json, per_user.parquet, history.csv, metrics.csv, .hydra/ and multirun.yaml. The expected numbers
are read from those files here, so the test pins how compare reads them, not the numbers themselves.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

CHECKOUT = Path(__file__).resolve().parent.parent
FIXTURE = CHECKOUT / "tests" / "fixtures" / "runs_before_spine"
JOBS = {"0": ("hybrid", 0), "1": ("hybrid", 1), "2": ("kl", 0), "3": ("kl", 1)}  # job -> (distill, seed)
ROLES = ("teacher", "student", "student_kd")
METRICS = ("accuracy", "mae", "rmse")


def compare(*args, cwd):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "RECDISTILL_CACHE_DIR": str(cwd / "cache"),
           "PYTHONPATH": str(CHECKOUT)}  # this checkout's recdistill, whatever the installed one
    result = subprocess.run([sys.executable, "-m", "recdistill.cli", "compare", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.fixture
def runs(tmp_path):
    """A copy of the fixture (nothing can change the checked-in files) and its metrics per job."""
    root = tmp_path / "runs_before_spine"
    shutil.copytree(FIXTURE, root)
    metrics = {job: json.loads((root / job / "metrics.json").read_text()) for job in JOBS}
    for job, (distill, seed) in JOBS.items():  # the fixture is what this test says it is
        assert metrics[job]["run"]["distill"] == distill and metrics[job]["run"]["seed"] == seed
    return root, metrics


def values(metrics, distill, role, metric, split="test"):
    return np.array([metrics[job][role][split][metric] for job, (d, _) in JOBS.items() if d == distill])


def per_user(root, job, role, metric):
    table = pd.read_parquet(root / job / "per_user.parquet")
    return table.loc[table["role"] == role, ["user", metric]]


def student_pairs(root, distill, metric):
    """student_kd against the student of the same run, joined on user per run, then averaged per user over both
    seeds: one pair per user (concatenating the seeds would count every user twice)."""
    parts = [per_user(root, job, "student_kd", metric).merge(per_user(root, job, "student", metric), on="user",
                                                               suffixes=("", "_baseline")).assign(seed=seed)
             for job, (d, seed) in JOBS.items() if d == distill]
    # synthetic data is generated per seed (each seed its own split key): user 1 of seed 0 is not user 1 of
    # seed 1, so users are only averaged within one data set
    joined = pd.concat(parts, ignore_index=True).groupby(["seed", "user"]).mean()
    return joined[metric].to_numpy(float), joined[f"{metric}_baseline"].to_numpy(float)


def check_tests(group, metric, candidate, baseline):
    assert group[f"{metric}_pairs"] == len(candidate) > 100  # users
    assert group[f"{metric}_ci_low"] <= group[f"{metric}_diff"] <= group[f"{metric}_ci_high"]
    assert group[f"{metric}_diff"] == pytest.approx((candidate - baseline).mean(), abs=1e-12)
    assert group[f"{metric}_p_ttest"] == pytest.approx(stats.ttest_rel(candidate, baseline).pvalue, rel=1e-9)
    assert group[f"{metric}_p_wilcoxon"] == pytest.approx(
        stats.wilcoxon(candidate, baseline, zero_method="wilcox").pvalue, rel=1e-9)


def test_json_holds_the_old_runs_numbers_and_paired_tests(runs, tmp_path):
    root, metrics = runs
    document = json.loads(compare(str(root), "--format", "json", cwd=tmp_path))
    assert document["group_keys"] == ["distill.name"] and document["metrics"] == list(METRICS)
    assert document["split"] == "test" and document["baseline"] == "student (same runs)"
    assert document["failed"] == []
    assert [(g["distill.name"], g["role"]) for g in document["groups"]] == [
        (d, r) for d in ("hybrid", "kl") for r in ROLES]
    for group in document["groups"]:
        distill, role = group["distill.name"], group["role"]
        jobs = [job for job, (d, _) in JOBS.items() if d == distill]
        # teacher_seed is 0 in both, but the data differ per seed: two teachers (two teacher keys)
        assert group["n"] == 2 and group["seeds"] == [0, 1] and group["teacher_seeds"] == 2
        assert [Path(run).name for run in group["runs"]] == jobs
        for metric in METRICS:
            numbers = values(metrics, distill, role, metric)
            assert group[f"{metric}_mean"] == pytest.approx(numbers.mean(), abs=1e-12)
            assert group[f"{metric}_std"] == pytest.approx(numbers.std(ddof=1), abs=1e-12)
        assert group["params_mean"] == metrics[jobs[0]][role]["efficiency"]["params"]
        if role == "student_kd":
            assert group["baseline"] == "student (same runs)"
            for metric in METRICS:
                check_tests(group, metric, *student_pairs(root, distill, metric))
        else:
            assert group["baseline"] == "" and all(group[f"{m}_pairs"] is None for m in METRICS)
    # the teacher and the student alone do not depend on the strategy: the same in both groups
    teachers = [g for g in document["groups"] if g["role"] == "teacher"]
    assert teachers[0]["mae_mean"] == teachers[1]["mae_mean"]


def test_a_baseline_group_is_averaged_over_seeds_then_paired_on_user(runs, tmp_path):
    root, metrics = runs
    document = json.loads(compare(str(root), "--format", "json", "--baseline", "distill.name=hybrid",
                                  "--split", "valid", cwd=tmp_path))
    groups = {(g["distill.name"], g["role"]): g for g in document["groups"]}
    for role in ROLES:  # valid-split means, test-split paired tests
        for metric in METRICS:
            assert groups[("kl", role)][f"{metric}_mean"] == pytest.approx(
                values(metrics, "kl", role, metric, "valid").mean(), abs=1e-12)
        assert groups[("hybrid", role)]["baseline"] == "(baseline)"
        # the teacher and the student alone are the same cached models in both groups: not tested
        assert groups[("kl", role)]["baseline"] == ("distill.name=hybrid" if role == "student_kd" else "(same models)")
    kd = groups[("kl", "student_kd")]
    for metric in METRICS:
        sides = []
        for distill in ("kl", "hybrid"):
            parts = [per_user(root, job, "student_kd", metric).assign(seed=seed)
                     for job, (d, seed) in JOBS.items() if d == distill]
            sides.append(pd.concat(parts, ignore_index=True).groupby(["seed", "user"], as_index=False).mean())
        joined = sides[0].merge(sides[1], on=["seed", "user"], suffixes=("", "_baseline"))  # one pair per user
        check_tests(kd, metric, joined[metric].to_numpy(float), joined[f"{metric}_baseline"].to_numpy(float))
    assert all(groups[("kl", role)]["mae_pairs"] is None for role in ("teacher", "student"))


def test_markdown_table_shows_the_old_runs(runs, tmp_path):
    root, metrics = runs
    caption, blank, *lines = compare(str(root), "--format", "markdown", cwd=tmp_path).splitlines()
    assert caption.startswith("test metrics, mean ± std over the n runs") and blank == ""
    assert lines[0].startswith("| distill.name | role | accuracy | mae | rmse | params | latency ms | n | teacher seeds "
                               "| baseline | pairs (users) accuracy | Δ accuracy | 95% CI accuracy | p t-test accuracy "
                               "| p Wilcoxon accuracy | p Holm accuracy (family of 2) |")
    assert len(lines) == 2 + 6
    for line in lines[2:]:
        cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")]
        distill, role = cells[0], cells[1]
        for position, metric in enumerate(METRICS, start=2):
            numbers = values(metrics, distill, role, metric)
            assert cells[position] == f"{numbers.mean():.4f} ± {numbers.std(ddof=1):.4f}", (line, metric)
        params = metrics[next(j for j, (d, _) in JOBS.items() if d == distill)][role]["efficiency"]["params"]
        assert cells[5] == f"{params:,}" and cells[7] == "2" and cells[8] == "2"  # 2 runs, 2 teachers
        if role == "student_kd":
            candidate, baseline = student_pairs(root, distill, "mae")
            assert cells[9] == "student (same runs)"
            assert cells[16] == str(len(candidate))  # pairs (users) mae
            assert cells[17] == f"{(candidate - baseline).mean():+.4f}"  # Δ mae
            assert cells[19] == f"{stats.ttest_rel(candidate, baseline).pvalue:.3g}"
        else:
            assert cells[9:] == [""] * 19
