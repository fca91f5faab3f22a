"""Sweeps: a failed job does not stop the others, finished jobs are skipped on a re-run, and
concurrent jobs train a shared teacher once."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # whole sweeps: run by CI with -m slow


def launch(*args, cwd, cache):
    env = {"RECDISTILL_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.Popen([sys.executable, "-m", "recdistill.cli", "train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    out, err = process.communicate(timeout=300)
    return process.returncode, out + err


def test_failed_job_is_recorded_and_a_rerun_finishes_only_what_is_missing(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "+experiment=synthetic_kd", "trainer.student.monitor=mae,ndcg", f"hydra.sweep.dir={sweep}"]
    code, output = finish(launch(*args, cwd=tmp_path, cache=tmp_path / "cache"))
    assert code == 0, output[-3000:]
    assert (sweep / "0" / "metrics.json").exists()
    error = json.loads((sweep / "1" / "error.json").read_text())
    assert error["error"] == "ConfigError" and "ndcg" in error["message"]

    finished = (sweep / "0" / "metrics.json").stat().st_mtime_ns
    code, output = finish(launch(*args, cwd=tmp_path, cache=tmp_path / "cache"))
    assert code == 0, output[-3000:]
    assert "already holds complete results" in output
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == finished  # not run again
    assert (sweep / "1" / "error.json").exists()  # tried again, failed again


def test_concurrent_jobs_train_a_shared_teacher_once(tmp_path):
    jobs = [launch("+experiment=synthetic_kd", f"hydra.run.dir=run{i}", f"distill={d}", cwd=tmp_path,
                   cache=tmp_path / "cache") for i, d in enumerate(("kl", "hard"))]
    for job in jobs:
        code, output = finish(job)
        assert code == 0, output[-3000:]
    runs = [json.loads((tmp_path / f"run{i}" / "metrics.json").read_text()) for i in range(2)]
    assert sorted(r["run"]["teacher_from_cache"] for r in runs) == [False, True]
    assert runs[0]["teacher"]["test"] == runs[1]["teacher"]["test"]
    assert len(list((tmp_path / "cache" / "teachers").glob("*.pt"))) == 1


def test_joblib_launcher_runs_jobs_in_parallel_sharing_one_teacher(tmp_path):
    sweep = tmp_path / "sweep"
    code, output = finish(launch("-m", "+experiment=synthetic_kd", "distill=kl,hard", "hydra/launcher=joblib",
                                 "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
                                 cache=tmp_path / "cache"))
    assert code == 0, output[-3000:]
    runs = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in range(2)]
    assert sorted(r["run"]["distill"] for r in runs) == ["hard", "kl"]
    assert sorted(r["run"]["teacher_from_cache"] for r in runs) == [False, True]


def test_optuna_study_is_stored_and_resumed(tmp_path):
    import optuna

    args = ["-m", "+experiment=synthetic_kd", "+hparams_search=movielens_kd_optuna", "hydra.sweeper.n_trials=2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    code, output = finish(launch(*args, cwd=tmp_path, cache=tmp_path / "cache"))
    assert code == 0, output[-3000:]
    storage = f"sqlite:///{tmp_path / 'outputs' / 'optuna.db'}"
    study = optuna.load_study(study_name="synthetic_kd_kl", storage=storage)
    assert len(study.trials) == 2 and study.best_value > 0

    args[3] = "hydra.sweeper.n_trials=1"  # one more trial, added to the stored study
    code, output = finish(launch(*args[:4], f"hydra.sweep.dir={tmp_path / 'sweep2'}", cwd=tmp_path,
                                 cache=tmp_path / "cache"))
    assert code == 0, output[-3000:]
    assert len(optuna.load_study(study_name="synthetic_kd_kl", storage=storage).trials) == 3
