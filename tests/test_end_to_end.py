"""The whole study on synthetic data through the real CLI and pipeline, in seconds."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.run.spine import run
from tests.helpers import crash_in_second_epoch_of

RUN_FILES = ("metrics.json", "metrics.csv", "history.csv", "per_user.parquet", "split.json", "run.log",
             ".hydra/config.yaml", ".hydra/overrides.yaml", "knowledge/teacher_knowledge.pt", "report.md",
             "training_curves.png")


def cli(*args, cwd, cache):
    env = {"RECDISTILL_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "recdistill.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_train_writes_every_result_file(tmp_path):
    result = cli("train", "+experiment=synthetic_kd", "hydra.run.dir=run", cwd=tmp_path, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    for name in RUN_FILES:
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"run", "teacher", "student", "student_kd"}
    for role in ("teacher", "student", "student_kd"):
        for split in ("valid", "test"):
            assert set(metrics[role][split]) == {"accuracy", "mae", "rmse"}
            assert 0 < metrics[role][split]["mae"] < 2
        assert metrics[role]["efficiency"]["params"] > 0
    info = metrics["run"]
    assert info["protocol"]["split"]["name"] == "chrono_ratio" and info["seed"] == 0
    assert info["versions"]["torch"] and info["git"]["commit"]
    assert info["loss_formula"] == "loss = 1.0 * ce + 1.0 * soft"
    assert metrics["teacher"]["efficiency"]["params"] > metrics["student"]["efficiency"]["params"]
    history = pd.read_csv(run_dir / "history.csv")
    assert {"role", "epoch", "train_loss", "train_ce", "valid_mae", "seconds"} <= set(history.columns)
    assert "train_soft" in history[history.role == "student_kd"].dropna(axis=1).columns
    per_user = pd.read_parquet(run_dir / "per_user.parquet")
    assert set(per_user["role"]) == {"teacher", "student", "student_kd"}

    # a second run with the same teacher settings reuses the cached teacher
    again = cli("train", "+experiment=synthetic_kd", "hydra.run.dir=run2", "distill=kl", cwd=tmp_path,
                cache=tmp_path / "cache")
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert second["run"]["teacher_from_cache"] and second["teacher"]["test"] == metrics["teacher"]["test"]
    # ... and the student-alone baseline, which does not depend on the strategy
    assert second["student"]["training"]["from_cache"] and second["student"]["test"] == metrics["student"]["test"]

    compare = cli("compare", "run", "run2", cwd=tmp_path, cache=tmp_path / "cache")
    assert compare.returncode == 0, compare.stderr
    assert "student_kd" in compare.stdout and "kl" in compare.stdout


def compose_synthetic(run_dir, cache):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=["+experiment=synthetic_kd", f"cache_dir={cache}",
                                                        "distill=feature", "trainer.student.epochs=3"])


def comparable(metrics):
    return {role: {s: metrics[role][s] for s in ("valid", "test")} for role in ("teacher", "student", "student_kd")}


def test_an_interrupted_run_resumes_to_the_same_metrics(tmp_path, monkeypatch):
    full = run(compose_synthetic(tmp_path / "full", tmp_path / "cache_full"), tmp_path / "full")

    restore_saving = crash_in_second_epoch_of("student_kd", monkeypatch)
    cfg = compose_synthetic(tmp_path / "cut", tmp_path / "cache_cut")
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut")
    assert not (tmp_path / "cut" / "metrics.json").exists()
    restore_saving()
    resumed = run(cfg, tmp_path / "cut")
    assert comparable(resumed) == comparable(full)


def test_bad_config_value_is_a_clean_error(tmp_path):
    result = cli("train", "+experiment=synthetic_kd", "hydra.run.dir=run", "task=regression", cwd=tmp_path,
                 cache=tmp_path / "cache")
    assert result.returncode == 2
    output = " ".join((result.stdout + result.stderr).split())
    assert "task='regression' must be one of ranking, rating" in output
    assert "Traceback" not in result.stderr


def test_a_run_folder_refuses_a_different_config(tmp_path):
    from recdistill.errors import ConfigError
    from recdistill.run.record import claim_run_dir

    cfg = compose_synthetic(tmp_path / "run", tmp_path / "cache")
    claim_run_dir(cfg, tmp_path / "run")
    claim_run_dir(cfg, tmp_path / "run")  # the same config may continue
    cfg.seed = 1
    with pytest.raises(ConfigError, match="different config"):
        claim_run_dir(cfg, tmp_path / "run")


@pytest.mark.parametrize("experiment", ["synthetic_kd", "synthetic_rank_kd"])
def test_latency_warmup_and_repeats_reach_every_roles_timing(tmp_path, monkeypatch, experiment):
    from recdistill.evaluation import efficiency

    timed = []
    measure = efficiency.measure_latency

    def record(fn, n_warmup, n_repeats, device):
        timed.append((n_warmup, n_repeats))
        return measure(fn, n_warmup, n_repeats, device)

    monkeypatch.setattr(efficiency, "measure_latency", record)
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="config", overrides=[
            f"+experiment={experiment}", f"cache_dir={tmp_path / 'cache'}", "trainer.teacher.epochs=1",
            "trainer.student.epochs=1", "evaluator.latency_warmup=0", "evaluator.latency_repeats=2"])
    run(cfg, tmp_path / "run")
    assert len(timed) >= 3 and set(timed) == {(0, 2)}  # teacher, student, student_kd at least
