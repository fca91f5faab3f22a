"""Cluster sweeps through Hydra's submitit launcher: `hydra/launcher=submitit_local` runs each job in
its own process as SLURM would run it on a node, sharing the model cache (its file lock) and reporting
to the sweep summary; `hydra/launcher=slurm` (configs/hydra/launcher/slurm.yaml) composes onto the
plugin's SLURM schema."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.run import sweep as bookkeeping
from tests.test_sweeps import BAD, GOOD, TINY, finish, jobs, launch

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the launcher extra (hydra-submitit-launcher)")

LOCAL = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]


def compose_launcher(*overrides: str):
    register_schemas()
    bookkeeping.register_resolver()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=["+experiment=synthetic_kd", *overrides],
                       return_hydra_config=True).hydra.launcher


def test_slurm_preset_extends_the_plugins_schema_and_the_plugins_own_choices_compose() -> None:
    slurm = compose_launcher("hydra/launcher=slurm", "hydra.launcher.partition=gpu")
    assert slurm._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (slurm.partition, slurm.gpus_per_node, slurm.cpus_per_task, slurm.tasks_per_node) == ("gpu", 1, 8, 1)
    assert slurm.timeout_min == 240 and slurm.array_parallelism == 16 and slurm.name == "recdistill_synthetic_kd"
    assert slurm.submitit_folder.endswith("/.submitit/%j")  # submitit's logs inside the sweep folder
    assert compose_launcher("hydra/launcher=submitit_slurm").array_parallelism == 256
    assert compose_launcher("hydra/launcher=submitit_local")._target_.endswith(".LocalLauncher")
    with pytest.raises(HydraException, match="partitio"):  # the plugin's schema refuses a misspelt key
        compose_launcher("hydra/launcher=slurm", "hydra.launcher.partitio=gpu")


@pytest.mark.slow  # ~45-75 s of subprocesses: runs in CI's slow pass
def test_submitit_local_sweep_runs_both_jobs_sharing_one_teacher(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    code, output = finish(launch("-m", *TINY, "distill=kl,hard", *LOCAL, f"hydra.sweep.dir={sweep}",
                                 cwd=tmp_path, cache=tmp_path / "cache"))
    assert code == 0, output[-3000:]
    assert "2 done, 0 skipped, 0 failed" in output
    folders = jobs(sweep)
    assert set(folders) == {"distill=kl", "distill=hard"}  # job folders named by their overrides, as always
    runs = [json.loads((folders[f"distill={d}"] / "metrics.json").read_text()) for d in ("kl", "hard")]
    assert [r["run"]["distill"] for r in runs] == ["kl", "hard"]
    assert all(set(r) >= {"teacher", "student_kd"} for r in runs)
    # two processes, one teacher: the second waited on the cache's file lock and loaded it
    assert sorted(r["run"]["teacher_from_cache"] for r in runs) == [False, True]
    assert len(list((tmp_path / "cache" / "teachers").glob("*.pt"))) == 1
    logs = sorted(p.name for p in (sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # each job's stdout, kept by submitit in the sweep folder


@pytest.mark.slow
def test_submitit_local_sweep_with_a_failed_job_summarises_it_and_exits_1(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    code, output = finish(launch("-m", *TINY, f"split.ratios={GOOD},{BAD}", *LOCAL, f"hydra.sweep.dir={sweep}",
                                 cwd=tmp_path, cache=tmp_path / "cache"))
    assert code == 1, output[-3000:]
    assert "1 done, 0 skipped, 1 failed" in output and "Traceback" not in output
    folders = jobs(sweep)
    assert (folders[f"split.ratios={GOOD}"] / "metrics.json").exists()
    error = json.loads((folders[f"split.ratios={BAD}"] / "error.json").read_text())
    assert error["error"] == "ConfigError" and "split.ratios" in error["message"]
