"""`trainer.refit_on_valid`: models selected on validation, then trained again on train + valid."""

import json

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.errors import ConfigError, RecdistillError
from recdistill.reporting.compare import compare_main
from recdistill.run.spine import run
from recdistill.tasks.base import get_task

ROLES = ("teacher", "student", "student_kd")


def compose_run(cache, *overrides, experiment="synthetic_kd"):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=[f"+experiment={experiment}", f"cache_dir={cache}",
                                                        "trainer.teacher.epochs=3", "trainer.student.epochs=3",
                                                        "trainer.teacher.patience=3", "trainer.student.patience=3",
                                                        *overrides])


def test_refit_reports_first_pass_validation_and_tests_the_refits(tmp_path, capsys):
    plain = run(compose_run(tmp_path / "cache"), tmp_path / "plain")
    refit = run(compose_run(tmp_path / "cache", "trainer.refit_on_valid=true"), tmp_path / "refit")
    for role in ROLES:
        block = refit[role]
        assert block["valid"] == plain[role]["valid"]  # validation metrics: the first pass's models
        assert block["test_without_refit"] == plain[role]["test"]
        assert block["refit"]["epochs"] == plain[role]["training"]["best_epoch"]
        assert block["test"] != plain[role]["test"]  # a different model: trained on more ratings
    assert len({refit[role]["refit"]["targets"] for role in ROLES}) == 1
    for role in ("teacher", "student"):  # the refits are cached under their own keys
        assert (tmp_path / "cache" / f"{role}s" / f"{refit[role]['refit']['key']}.pt").exists()
        assert refit[role]["refit"]["key"] != refit["run"][f"{role}_key"]
    assert (tmp_path / "refit" / "checkpoints" / "student_kd_refit.pt").exists()
    assert refit["student_kd"]["refit"]["key"] is None  # the distilled refit lives in the run folder
    assert set(pd.read_parquet(tmp_path / "refit" / "per_user.parquet")["role"]) == set(ROLES)
    history = pd.read_csv(tmp_path / "refit" / "history.csv")
    for role in ROLES:
        again = history[history.role == f"{role}_refit"]
        assert again["epoch"].tolist() == list(range(1, refit[role]["refit"]["epochs"] + 1))
        assert again.filter(like="valid_").isna().all().all()  # a refit validates nothing
    assert "trained again on train + valid" in refit["run"]["protocol"]["model_selection"]
    report = (tmp_path / "refit" / "report.md").read_text()
    mae = refit["teacher"]["test_without_refit"]["mae"], refit["teacher"]["test"]["mae"]
    assert "## Refit on train + valid" in report and f"{mae[0]:.4f} → {mae[1]:.4f}" in report
    assert "## Refit" not in (tmp_path / "plain" / "report.md").read_text()
    for split, block in (("test_without_refit", "test_without_refit"), ("test", "test")):
        capsys.readouterr()
        compare_main([str(tmp_path / "refit"), "--split", split, "--metric", "mae", "--format", "json"])
        groups = json.loads(capsys.readouterr().out)["groups"]
        assert {g["role"]: g["mae_mean"] for g in groups} == pytest.approx({r: refit[r][block]["mae"] for r in ROLES})
        # the per-user values are the refit's: no paired test is shown against the first pass's means
        assert any("mae_pairs" in g for g in groups) == (split == "test")
    with pytest.raises(RecdistillError, match=r"1 run\(s\) were not refitted .*plain"):
        compare_main([str(tmp_path / "plain"), str(tmp_path / "refit"), "--split", "test_without_refit"])

    # the teacher and student-alone refits are cached; the distilled refit is the run's own
    again = run(compose_run(tmp_path / "cache", "trainer.refit_on_valid=true", "distill=kl"), tmp_path / "kl")
    for role in ("teacher", "student"):
        assert again[role]["refit"]["from_cache"] and again[role]["test"] == refit[role]["test"]
    assert again["student_kd"]["test"] != refit["student_kd"]["test"]


def test_refit_trains_on_train_plus_valid(tmp_path):
    cfg = compose_run(tmp_path / "cache", "trainer.refit_on_valid=true")
    task = get_task(cfg, torch.device("cpu"))
    data = task.prepare(tmp_path / "run")
    seen = task.refit_data(data)
    assert len(seen.train) == len(data.split.train) + len(data.split.valid)
    assert seen.windows is data.windows and seen.evaluation is data.evaluation  # evaluation inputs unchanged
    # every train and valid rating is a training target, once
    batch = next(seen.train.batches(10 ** 9))
    assert sorted(batch["index"].tolist()) == list(range(len(seen.train)))


@pytest.mark.parametrize("experiment, message", [
    ("synthetic_rank_kd", "refit_on_valid=true is implemented for task=rating only, not task=ranking"),
    ("synthetic_transfer", "refit_on_valid=true needs transfer.mode=none, got 'shared_weights'"),
])
def test_refit_where_it_cannot_apply_is_a_config_error_before_anything_is_built(tmp_path, experiment, message):
    cfg = compose_run(tmp_path / "cache", "trainer.refit_on_valid=true", experiment=experiment)
    with pytest.raises(ConfigError, match=message):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
