"""The top-K ranking study on synthetic data through the real CLI and pipeline, in seconds."""

import json

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.run.spine import run
from tests.helpers import crash_in_second_epoch_of
from tests.test_end_to_end import cli

RANKING_FILES = ("metrics.json", "metrics.csv", "history.csv", "per_user.parquet", "topk.parquet", "split.json",
                 "run.log", "knowledge/teacher_knowledge.pt", "report.md", "training_curves.png")
ROLES = ("teacher", "student", "student_kd")


def compose_ranking(cache, *overrides):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=["+experiment=synthetic_rank_kd", f"cache_dir={cache}",
                                                        *overrides])


def test_ranking_run_writes_results_that_the_saved_topk_lists_reproduce(tmp_path):
    result = cli("train", "+experiment=synthetic_rank_kd", "hydra.run.dir=run", cwd=tmp_path, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    for name in RANKING_FILES:
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    protocol = metrics["run"]["protocol"]
    assert protocol["protocol"] == "full" and protocol["mask_history"] is True
    assert protocol["split"]["name"] == "leave_one_out" and metrics["run"]["task"] == "ranking"
    assert metrics["run"]["loss_formula"] == "loss = 1.0 * ce + 0.001 * rrd"
    for role in ROLES:
        assert {"ndcg@10", "hr@10", "recall@20", "precision@5", "mrr@10", "map@10", "coverage@10"} <= set(
            metrics[role]["test"])
    assert metrics["teacher"]["efficiency"]["params"] > 5 * metrics["student"]["efficiency"]["params"]
    for role in ROLES:  # how many users' lists the tie rule decides, and out of how many
        tied = metrics[role]["tied_users"]
        assert set(tied) == {"valid", "valid_users", "test", "test_users"}
        assert 0 <= tied["test"] <= tied["test_users"] and tied["test_users"] > 0
    assert "hash of (seed=0, raw user id, raw item id)" in protocol["ties"]
    assert json.loads((run_dir / "data_report.json").read_text())["n_interactions"] > 0
    assert metrics["run"]["data_fingerprint"] is None  # generated data: its config and seed determine it

    # Anyone can check the numbers: HR@10 and NDCG@10 recomputed from topk.parquet and the saved split.
    split_dir = json.loads((run_dir / "split.json").read_text())["path"]
    test = pd.read_parquet(f"{split_dir}/test.parquet")[["user", "item"]]
    topk = pd.read_parquet(run_dir / "topk.parquet")
    assert list(topk.columns) == ["role", "user", "rank", "item", "score"]
    for role in ROLES:
        lists = topk[(topk.role == role) & (topk["rank"] <= 10)]
        hits = lists.merge(test, on=["user", "item"])  # leave-one-out: one test item per user
        n_users = test["user"].nunique()
        assert len(hits) / n_users == pytest.approx(metrics[role]["test"]["hr@10"])
        ndcg = (1 / (hits["rank"] + 1).map(lambda r: __import__("math").log2(r))).sum() / n_users
        assert ndcg == pytest.approx(metrics[role]["test"]["ndcg@10"])
        train = pd.read_parquet(f"{split_dir}/train.parquet")
        leaked = lists.merge(train[["user", "item"]], on=["user", "item"])
        assert leaked.empty, "a training item was recommended although history is masked"

    per_user = pd.read_parquet(run_dir / "per_user.parquet")
    assert set(per_user["role"]) == set(ROLES) and "ndcg@10" in per_user.columns
    history = pd.read_csv(run_dir / "history.csv")
    assert "train_rrd" in history[history.role == "student_kd"].dropna(axis=1).columns
    assert "valid_ndcg@10" in history.columns

    compare = cli("compare", "run", cwd=tmp_path, cache=tmp_path / "cache")
    assert compare.returncode == 0, compare.stderr
    assert "ndcg@10" in compare.stdout and "student_kd" in compare.stdout


def test_sampled_protocol_is_named_in_the_results(tmp_path):
    cfg = compose_ranking(tmp_path / "cache", "evaluator.protocol=sampled", "evaluator.n_negatives=9",
                          "distill=none", "train_student_alone=false")
    metrics = run(cfg, tmp_path / "run")
    assert metrics["run"]["protocol"]["protocol"] == "sampled"
    assert "9 uniformly sampled" in metrics["run"]["protocol"]["ranking"]
    assert metrics["teacher"]["test"]["hr@10"] == 1.0  # 10 candidates: the truth is always in the top 10
    assert metrics["teacher"]["test"]["hr@5"] < 1.0


def test_rating_strategy_on_the_ranking_task_is_a_clean_error(tmp_path):
    result = cli("train", "+experiment=synthetic_rank_kd", "hydra.run.dir=run", "distill=kl", cwd=tmp_path,
                 cache=tmp_path / "cache")
    assert result.returncode == 2
    output = " ".join((result.stdout + result.stderr).split())
    assert "strategy 'kl' works on the rating task, not ranking" in output and "'rrd'" in output
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["de_rrd", "htd"])  # both carry learned experts; HTD also an annealed temperature
def test_an_interrupted_ranking_run_resumes_to_the_same_metrics(tmp_path, monkeypatch, strategy):
    def comparable(metrics):
        return {role: {s: metrics[role][s] for s in ("valid", "test")} for role in ("teacher", "student_kd")}

    overrides = ("trainer.student.epochs=3", f"distill={strategy}", "train_student_alone=false")
    full = run(compose_ranking(tmp_path / "cache_full", *overrides), tmp_path / "full")
    restore_saving = crash_in_second_epoch_of("student_kd", monkeypatch)
    cfg = compose_ranking(tmp_path / "cache_cut", *overrides)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut")
    restore_saving()
    resumed = run(cfg, tmp_path / "cut")
    assert comparable(resumed) == comparable(full)


def test_a_teacher_only_run_of_a_learnable_strategy_extracts_nothing(tmp_path):
    # students=false: HTD's group assignment (sized by the student) is never built, no knowledge is saved.
    cfg = compose_ranking(tmp_path / "cache", "students=false", "distill=htd")
    metrics = run(cfg, tmp_path / "run")
    assert set(metrics) >= {"run", "teacher"} and "student_kd" not in metrics
    assert not (tmp_path / "run" / "knowledge").exists()
