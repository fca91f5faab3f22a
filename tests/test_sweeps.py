"""Sweeps: job folders named by their overrides, a summary with exit code 1 when a job failed,
finished jobs skipped on a re-run and never written into, and concurrent jobs that train a
shared teacher once."""

import json
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.errors import ConfigError
from recdistill.run import sweep as bookkeeping

# A tiny budget: one epoch each, 60 users, no student-alone baseline, one latency repeat.
TINY = ["+experiment=synthetic_kd", "dataset.synthetic.n_users=60", "trainer.teacher.epochs=1",
        "trainer.student.epochs=1", "train_student_alone=false", "evaluator.latency_repeats=1"]
TINY_KEYS = {o.split("=")[0] for o in TINY}
GOOD, BAD = "[0.8,0.1,0.1]", "[0.5,0.1,0.1]"  # split.ratios: BAD does not sum to 1


def launch(*args, cwd, cache):
    env = {"RECDISTILL_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.Popen([sys.executable, "-m", "recdistill.cli", "train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    out, err = process.communicate(timeout=600)
    return process.returncode, out + err


def jobs(sweep):
    """{the job's overrides that are not TINY: its folder} for every job folder of the sweep."""
    found = {}
    for overrides_file in sweep.glob("*/.hydra/overrides.yaml"):
        own = [o for o in yaml.safe_load(overrides_file.read_text()) if o.split("=")[0] not in TINY_KEYS]
        found[" ".join(sorted(own))] = overrides_file.parent.parent
    return found


def test_job_folder_names_are_safe_bounded_and_distinct():
    name = bookkeeping.job_folder_name
    assert name("+experiment=synthetic_kd,seed=2") == "+experiment=synthetic_kd,seed=2"  # safe: kept as it is
    assert name("split.ratios=[0.8,0.1,0.1]") == "split.ratios=[0.8,0.1,0.1]"
    assert name("") == "defaults"  # a sweep without overrides still gets a folder of its own
    unsafe = ["dataset.path=/data/ml", "dataset.path=_data_ml", "name='a b'", "x=..", ".hidden=1", "url=a:b"]
    names = [name(o) for o in unsafe]
    assert len(set(names)) == len(names)  # replacing characters never merges two jobs
    for folder in names:
        assert "/" not in folder and " " not in folder and ":" not in folder and not folder.startswith(".")
    long = [name(",".join(f"key{i}=value{i}" for i in range(40)) + f",seed={s}") for s in range(3)]
    assert len(set(long)) == 3 and all(len(folder) <= bookkeeping.MAX_NAME for folder in long)


@pytest.fixture
def sweep_job(tmp_path):
    """A composed sweep job's Hydra config (job 0 of a sweep in tmp_path/sweep), set as Hydra's current."""
    register_schemas()
    bookkeeping.register_resolver()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="config", overrides=["+experiment=synthetic_kd", "seed=1"],
                      return_hydra_config=True)
    job_dir = tmp_path / "sweep" / bookkeeping.job_folder_name(cfg.hydra.job.override_dirname)
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")
        cfg.hydra.job.num = 0
        cfg.hydra.runtime.output_dir = str(job_dir)
    HydraConfig.instance().set_config(cfg)
    job_dir.mkdir(parents=True)
    yield job_dir
    HydraConfig.instance().cfg = None


def test_a_failed_job_never_writes_error_json_next_to_finished_results(sweep_job):
    assert sweep_job.name == "+experiment=synthetic_kd,seed=1"
    finished = '{"run": {"config": {"seed": 0}}}'
    (sweep_job / "metrics.json").write_text(finished)  # another config's finished results

    bookkeeping.record_outcome(sweep_job, "failed", ConfigError("holds a run of a different config"))
    assert not (sweep_job / "error.json").exists() and (sweep_job / "metrics.json").read_text() == finished
    outcome = json.loads((sweep_job.parent / ".jobs" / "0.json").read_text())
    assert outcome["status"] == "failed" and outcome["error"] == "ConfigError"
    assert outcome["folder"] == sweep_job.name and "seed=1" in outcome["overrides"]

    (sweep_job / "metrics.json").unlink()  # a folder without results gets error.json
    bookkeeping.record_outcome(sweep_job, "failed", ConfigError("split.ratios must sum to 1"))
    assert json.loads((sweep_job / "error.json").read_text())["message"] == "split.ratios must sum to 1"


def test_a_sweep_with_a_failed_job_prints_the_summary_and_exits_1(tmp_path):
    sweep = tmp_path / "sweep"
    code, output = finish(launch("-m", *TINY, f"split.ratios={GOOD},{BAD}", f"hydra.sweep.dir={sweep}",
                                 cwd=tmp_path, cache=tmp_path / "cache"))
    assert code == 1, output[-3000:]
    folders = jobs(sweep)
    assert set(folders) == {f"split.ratios={GOOD}", f"split.ratios={BAD}"}  # folders named by overrides
    assert (folders[f"split.ratios={GOOD}"] / "metrics.json").exists()
    error = json.loads((folders[f"split.ratios={BAD}"] / "error.json").read_text())
    assert error["error"] == "ConfigError" and "split.ratios" in error["message"]
    # the summary: one row per job with its status; the failed one with its error type
    rows = [line for line in output.splitlines() if "│ split.ratios=" in line or "│ +experiment" in line]
    assert any("│ done" in row for row in rows) and any("│ failed" in row and "ConfigError:" in row for row in rows)
    assert "1 done, 0 skipped, 1 failed" in output and "Traceback" not in output
    assert not (tmp_path / "outputs").exists()  # the sweep folder was given: nothing under the working directory


def test_a_sweep_whose_every_job_fails_exits_1(tmp_path):
    sweep = tmp_path / "sweep"
    code, output = finish(launch("-m", *TINY, f"split.ratios={BAD},[0.6,0.1,0.1]", f"hydra.sweep.dir={sweep}",
                                 cwd=tmp_path, cache=tmp_path / "cache"))
    assert code == 1, output[-3000:]
    assert "0 done, 0 skipped, 2 failed" in output
    assert all((folder / "error.json").exists() for folder in jobs(sweep).values())


@pytest.mark.slow
def test_extending_a_finished_sweep_runs_only_the_new_jobs(tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    code, output = finish(launch("-m", *TINY, "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path, cache=cache))
    assert code == 0, output[-3000:]
    finished = {seed: (jobs(sweep)[f"seed={seed}"] / "metrics.json") for seed in (0, 1)}
    before = {seed: (path.stat().st_mtime_ns, path.read_text()) for seed, path in finished.items()}

    code, output = finish(launch("-m", *TINY, "seed=2,3", f"hydra.sweep.dir={sweep}", cwd=tmp_path, cache=cache))
    assert code == 0, output[-3000:]
    assert "2 done, 0 skipped, 0 failed" in output  # only the new jobs ran
    assert set(jobs(sweep)) == {"seed=0", "seed=1", "seed=2", "seed=3"}
    assert {seed: (path.stat().st_mtime_ns, path.read_text()) for seed, path in finished.items()} == before
    assert not list(sweep.glob("*/error.json"))

    compare = subprocess.run([sys.executable, "-m", "recdistill.cli", "compare", str(sweep), "--format", "json"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert compare.returncode == 0, compare.stderr[-3000:]
    groups = json.loads(compare.stdout)["groups"]  # one per role, each over the four jobs
    assert groups and all(sorted(g["seeds"]) == [0, 1, 2, 3] and len(g["runs"]) == 4 for g in groups)


@pytest.mark.slow
def test_a_rerun_skips_finished_jobs_and_retries_failed_ones(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "trainer.student.monitor=mae,ndcg", f"hydra.sweep.dir={sweep}"]
    code, output = finish(launch(*args, cwd=tmp_path, cache=tmp_path / "cache"))
    assert code == 1, output[-3000:]
    folders = jobs(sweep)
    assert (folders["trainer.student.monitor=mae"] / "metrics.json").exists()
    error = json.loads((folders["trainer.student.monitor=ndcg"] / "error.json").read_text())
    assert error["error"] == "ConfigError" and "ndcg" in error["message"]

    finished = (folders["trainer.student.monitor=mae"] / "metrics.json").stat().st_mtime_ns
    code, output = finish(launch(*args, cwd=tmp_path, cache=tmp_path / "cache"))
    assert code == 1, output[-3000:]
    assert "0 done, 1 skipped, 1 failed" in output
    assert (folders["trainer.student.monitor=mae"] / "metrics.json").stat().st_mtime_ns == finished  # not run again
    assert (folders["trainer.student.monitor=ndcg"] / "error.json").exists()  # tried again, failed again


@pytest.mark.slow
def test_concurrent_jobs_train_a_shared_teacher_once(tmp_path):
    jobs_ = [launch("+experiment=synthetic_kd", f"hydra.run.dir=run{i}", f"distill={d}", cwd=tmp_path,
                    cache=tmp_path / "cache") for i, d in enumerate(("kl", "hard"))]
    for job in jobs_:
        code, output = finish(job)
        assert code == 0, output[-3000:]
    runs = [json.loads((tmp_path / f"run{i}" / "metrics.json").read_text()) for i in range(2)]
    assert sorted(r["run"]["teacher_from_cache"] for r in runs) == [False, True]
    assert runs[0]["teacher"]["test"] == runs[1]["teacher"]["test"]
    assert len(list((tmp_path / "cache" / "teachers").glob("*.pt"))) == 1


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_sharing_one_teacher_and_summarises_them(tmp_path):
    sweep = tmp_path / "sweep"
    code, output = finish(launch("-m", *TINY, "distill=kl,hard", f"split.ratios={GOOD},{BAD}",
                                 "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}",
                                 cwd=tmp_path, cache=tmp_path / "cache"))
    assert code == 1, output[-3000:]  # the two jobs with BAD ratios failed in the worker processes
    assert "2 done, 0 skipped, 2 failed" in output
    folders = jobs(sweep)
    runs = [json.loads((folders[f"distill={d} split.ratios={GOOD}"] / "metrics.json").read_text())
            for d in ("kl", "hard")]
    assert sorted(r["run"]["distill"] for r in runs) == ["hard", "kl"]
    assert sorted(r["run"]["teacher_from_cache"] for r in runs) == [False, True]
    assert all((folders[f"distill={d} split.ratios={BAD}"] / "error.json").exists() for d in ("kl", "hard"))


@pytest.mark.slow
def test_optuna_study_is_stored_and_resumed_and_a_failed_trial_does_not_stop_it(tmp_path):
    import optuna

    args = ["-m", *TINY, "+hparams_search=movielens_kd_optuna", "hydra.sweeper.n_trials=2"]
    code, output = finish(launch(*args, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path,
                                 cache=tmp_path / "cache"))
    assert code == 0, output[-3000:]
    storage = f"sqlite:///{tmp_path / 'outputs' / 'optuna.db'}"
    study = optuna.load_study(study_name="synthetic_kd_kl", storage=storage)
    assert len(study.trials) == 2 and study.best_value > 0

    # one more trial, added to the stored study; it fails (no such split), the study records it as failed
    args[-1] = "hydra.sweeper.n_trials=1"
    code, output = finish(launch(*args, f"split.ratios={BAD}", f"hydra.sweep.dir={tmp_path / 'sweep2'}",
                                 cwd=tmp_path, cache=tmp_path / "cache"))
    assert code == 1, output[-3000:]
    assert "0 done, 0 skipped, 1 failed" in output
    trials = optuna.load_study(study_name="synthetic_kd_kl", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
