"""Transfer and cold-start studies on synthetic data through the real pipeline, in seconds."""

import json

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.errors import ConfigError
from recdistill.run.spine import run


def compose_experiment(experiment, cache, *overrides):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=[f"+experiment={experiment}", f"cache_dir={cache}", *overrides])


def saved_split(run_dir):
    folder = json.loads((run_dir / "split.json").read_text())["path"]
    return {name: pd.read_parquet(f"{folder}/{name}.parquet") for name in ("train", "valid", "test", "source")}


def test_shared_weights_teacher_is_pretrained_on_warm_users_and_distilled(tmp_path):
    metrics = run(compose_experiment("synthetic_transfer", tmp_path / "cache"), tmp_path / "run")
    transfer = metrics["teacher"]["transfer"]
    assert transfer["mode"] == "shared_weights" and transfer["copied_values"] > 0
    assert {group["name"] for group in transfer["lr_groups"]} == {"transferred"}  # same architecture: all copied
    assert set(metrics) >= {"teacher", "student", "student_kd", "global_mean", "item_mean"}
    split = saved_split(tmp_path / "run")
    cold_users = set(split["test"]["user"]) | set(split["valid"]["user"])
    assert cold_users.isdisjoint(split["source"]["user"]), "a new user's interactions reached the source model"
    assert set(split["train"]["user"]) <= cold_users  # the target trains on the new users' support only
    assert split["train"].groupby("user").size().max() == 3  # support_size k = 3
    assert 0 < metrics["teacher"]["test"]["mae"] < 2


def test_transfer_on_a_split_without_source_data_is_a_clean_error(tmp_path):
    cfg = compose_experiment("synthetic_kd", tmp_path / "cache", "transfer=shared_weights")
    with pytest.raises(ConfigError, match="needs a split with source data"):
        run(cfg, tmp_path / "run")


def test_zero_shot_ranks_only_cold_items_and_reports_the_baselines(tmp_path):
    metrics = run(compose_experiment("synthetic_coldstart_item", tmp_path / "cache"), tmp_path / "run")
    assert set(metrics) == {"run", "teacher", "random", "popularity", "oracle_popularity"}
    assert metrics["teacher"]["transfer"]["mode"] == "zero_shot"
    assert metrics["run"]["protocol"]["item_pool"].startswith("cold items")
    folder = json.loads((tmp_path / "run" / "split.json").read_text())["path"]
    cold_test = set(pd.read_parquet(f"{folder}/cold_test_items.parquet")["item"])
    train_items = set(pd.read_parquet(f"{folder}/train.parquet")["item"])
    assert cold_test.isdisjoint(train_items)
    topk = pd.read_parquet(tmp_path / "run" / "topk.parquet")
    assert set(topk["item"]) <= cold_test and set(topk["role"]) == {"teacher", "random", "popularity",
                                                                    "oracle_popularity"}
    # training popularity knows nothing of cold items; the oracle (test counts) beats it
    assert metrics["oracle_popularity"]["test"]["ndcg@10"] > metrics["popularity"]["test"]["ndcg@10"]


def test_meta_teacher_is_meta_trained_on_warm_users_and_adapts_to_new_ones(tmp_path):
    overrides = ()
    cfg = compose_experiment("synthetic_meta", tmp_path / "cache", *overrides)
    metrics = run(cfg, tmp_path / "run")
    assert metrics["teacher"]["model"] == "meta_rating" and metrics["teacher"]["transfer"]["mode"] == "meta"
    assert set(metrics) == {"run", "teacher", "global_mean", "item_mean"}
    # a second k reuses the meta-trained source model: it depends on the warm users only
    again = run(compose_experiment("synthetic_meta", tmp_path / "cache", *overrides, "split.support_size=1"),
                tmp_path / "run_k1")
    assert again["teacher"]["transfer"]["source_training"]["from_cache"]
    assert again["teacher"]["transfer"]["source_training"]["key"] == metrics["teacher"]["transfer"]["source_training"]["key"]


def test_zero_shot_writes_cold_item_vectors_only(tmp_path):
    import torch

    from recdistill.models.registry import build_model
    from recdistill.tasks.ranking import RankingTask
    from recdistill.transfer.cold_items import zero_shot_teacher

    cfg = compose_experiment("synthetic_coldstart_item", tmp_path / "cache", "transfer.content=[genres,year]")
    run_data = RankingTask(cfg, torch.device("cpu")).prepare(tmp_path)
    teacher = build_model(cfg.teacher, run_data.shape)
    before = teacher.item_factors.weight.detach().clone()
    summary = zero_shot_teacher(cfg, teacher, run_data, torch.device("cpu"))
    after = teacher.item_factors.weight.detach()
    trained = torch.bincount(run_data.lists.lists["train"].items, minlength=run_data.shape.n_items) > 0
    assert torch.equal(after[trained], before[trained]), "a warm item's vector changed"
    assert not torch.isclose(after[~trained], before[~trained]).all(dim=1).any(), "a cold item kept its random vector"
    assert summary["cold_items"] == int((~trained).sum()) and summary["warm_items"] == int(trained.sum())
