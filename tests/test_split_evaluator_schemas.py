"""Split and evaluator schemas per kind: foreign keys fail at composition, nodes become dataclasses, keys hold."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.data.split_config import (SPLIT_SCHEMAS, ColdItemSplit, ColdUserSplit, DomainGenreSplit,
                                          DomainTimeSplit, LeaveOneOutSplit, to_split_config)
from recdistill.data.splits import SPLIT_KINDS, split_key
from recdistill.errors import ConfigError
from recdistill.evaluation.config import (EVALUATOR_SCHEMAS, RankingEvaluatorConfig, RatingEvaluatorConfig,
                                          to_evaluator_config)

CONFIGS = config_dir()
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
#: Keys of each split option on MovieLens-100K, seed 0, computed by the code before per-kind schemas.
#: Split keys of ML-100K under each option, pinned so that a change of key is always on purpose
#: (changed once: the dataset part of the key is now the reader's `data_key`).
KEYS = {"chrono_ratio": "000f701f74a60eb8", "leave_one_out": "ca040ee7ef439196",
        "random_ratio": "dd9264b46a10fa57", "cold_user": "4286cc4d54803493", "cold_item": "a9ffb97db23a8077",
        "domain_genre": "a4c4f445d5290219", "domain_time": "3c70f2da5900ee1b"}
EXAMPLES = [*(schema() for schema in SPLIT_SCHEMAS.values()), ColdUserSplit(support_size=3, test_users=0.3),
            ColdItemSplit(min_item_interactions=4), DomainGenreSplit(target_genres=["Comedy"], target_fraction=0.3),
            DomainTimeSplit(time_quantile=0.6, ratios=[0.6, 0.2, 0.2])]


def compose_run(overrides: list[str]):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(config_name="config", overrides=overrides)


def composition_error(overrides: list[str]) -> str:
    with pytest.raises(Exception) as raised:
        compose_run(overrides)
    return f"{raised.value} {raised.value.__cause__}"


def test_every_split_kind_has_one_schema_one_maker_and_one_option() -> None:
    assert list(SPLIT_KINDS) == list(SPLIT_SCHEMAS)
    assert all(SPLIT_KINDS[kind].schema is schema for kind, schema in SPLIT_SCHEMAS.items())
    # given: its key follows its three files (tests/test_given_split.py), not ML-100K's
    options = sorted(p.stem for p in (CONFIGS / "split").glob("*.yaml"))
    assert options == sorted(SPLIT_SCHEMAS) == sorted([*KEYS, "given"])


@pytest.mark.parametrize("option", sorted(KEYS))
def test_each_split_option_composes_to_its_kind_under_its_pinned_key(option: str) -> None:
    cfg = compose_run([f"split={option}", "dataset=movielens_100k"])
    split = to_split_config(cfg.split)
    assert type(split) is SPLIT_SCHEMAS[option] and split.name == option
    assert split_key(cfg.dataset, cfg.split, 0) == split_key(cfg.dataset, split, 0) == KEYS[option]


@pytest.mark.parametrize("overrides, key", [
    (["split.support_size=3"], "support_size"),  # a cold_user key on a chrono split
    (["split.ratioz=[0.8,0.1,0.1]"], "ratioz"),  # misspelt
    (["split=leave_one_out", "split.ratios=[0.5,0.25,0.25]"], "ratios"),
    (["split=random_ratio", "split.max_support=3"], "max_support"),
    (["split=cold_user", "split.valid_items=0.2"], "valid_items"),
    (["split=cold_item", "split.support_size=3"], "support_size"),
    (["split=domain_genre", "split.time_quantile=0.5"], "time_quantile"),
    (["split=domain_genre", "split.domain_by=time"], "domain_by"),
    (["split=domain_time", "split.target_genres=[Drama]"], "target_genres"),
    (["+experiment=movielens_kd", "split.support_size=3"], "support_size"),
    (["evaluator.ks=[5]"], "ks"),
    (["evaluator.protocol=sampled"], "protocol"),
    (["evaluator.mask_history=false"], "mask_history"),
    (["evaluator.n_negatives=5"], "n_negatives"),
    (["evaluator.user_batch_size=5"], "user_batch_size"),
    (["evaluator.item_chunk=5"], "item_chunk"),
    (["evaluator=ranking", "evaluator.kss=[5]"], "kss"),
    (["+experiment=synthetic_kd", "evaluator.ks=[5]"], "ks"),
])
def test_a_key_of_another_kind_or_a_misspelt_key_fails_at_composition_naming_it(overrides: list[str], key: str
                                                                                  ) -> None:
    message = composition_error(overrides)
    assert f"Key '{key}' not in" in message, message


def test_a_foreign_key_in_an_experiment_file_fails_at_composition(tmp_path: Path) -> None:
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "bad_split.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /split: domain_time\nsplit:\n  target_genres: [Drama]\n")
    message = composition_error([f"hydra.searchpath=[file://{tmp_path}]", "+experiment=bad_split"])
    assert "Key 'target_genres' not in 'DomainTimeSplit'" in message, message


def test_wrong_types_fail_at_composition() -> None:
    assert "could not be converted to Integer" in composition_error(["split=cold_user", "split.support_size=x"])
    assert "could not be converted to Float" in composition_error(["split.ratios=[a,0.1,0.1]"])
    assert "could not be converted to Integer" in composition_error(["evaluator=ranking", "evaluator.ks=[x]"])


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_gives_typed_split_and_evaluator(experiment: str) -> None:
    cfg = compose_run([f"+experiment={experiment}"])
    split, evaluator = to_split_config(cfg.split), to_evaluator_config(cfg.evaluator)
    assert type(split) is SPLIT_SCHEMAS[cfg.split.name] and type(evaluator) is EVALUATOR_SCHEMAS[cfg.evaluator.name]
    assert asdict(split) == OmegaConf.to_container(cfg.split, resolve=True)
    assert asdict(evaluator) == OmegaConf.to_container(cfg.evaluator, resolve=True)


def test_experiment_files_and_command_lines_still_set_split_and_evaluator_keys() -> None:
    def typed(*overrides: str):
        cfg = compose_run(list(overrides))
        return to_split_config(cfg.split), to_evaluator_config(cfg.evaluator)

    assert typed("+experiment=movielens_coldstart_user")[0] == ColdUserSplit(support_size=10)
    assert typed("+experiment=movielens_coldstart_user", "split.support_size=3")[0] == ColdUserSplit(support_size=3)
    assert typed("+experiment=synthetic_meta") == (ColdUserSplit(support_size=3), RatingEvaluatorConfig(
        history_length=8, latency_repeats=3))
    assert typed("+experiment=movielens_transfer_kd")[0] == DomainGenreSplit(target_genres=["Comedy"],
                                                                             target_fraction=0.3)
    assert typed("+experiment=movielens_rank_recbole") == (LeaveOneOutSplit(), RankingEvaluatorConfig(
        mask_history=False))
    sampled = typed("+experiment=synthetic_rank_kd", "evaluator.protocol=sampled", "evaluator.n_negatives=9")[1]
    assert sampled == RankingEvaluatorConfig(history_length=16, latency_repeats=3, protocol="sampled", n_negatives=9)
    assert typed("+experiment=synthetic_kd")[1] == RatingEvaluatorConfig(history_length=8, latency_repeats=3)


@pytest.mark.parametrize("split", EXAMPLES, ids=lambda s: s.name)
def test_each_split_kind_round_trips(split) -> None:
    assert to_split_config(split) == split
    assert to_split_config(OmegaConf.structured(split)) == split
    assert to_split_config(asdict(split)) == split
    assert to_split_config(OmegaConf.create(asdict(split))) == split
    assert to_split_config(OmegaConf.create(OmegaConf.to_yaml(OmegaConf.structured(split)))) == split
    assert [f.name for f in fields(split)][0] == "name" and type(split).name == split.name


@pytest.mark.parametrize("evaluator", [RatingEvaluatorConfig(), RankingEvaluatorConfig(),
                                       RankingEvaluatorConfig(ks=[1, 50], protocol="sampled", n_negatives=10)],
                         ids=lambda e: e.name)
def test_each_evaluator_round_trips(evaluator) -> None:
    assert to_evaluator_config(evaluator) == evaluator
    assert to_evaluator_config(OmegaConf.structured(evaluator)) == evaluator
    assert to_evaluator_config(asdict(evaluator)) == evaluator


def test_flat_evaluator_records_keep_their_tasks_fields() -> None:
    flat = {"name": "rating", "history_length": 8, "input_history": "earlier_visible", "latency_batch_size": 256,
            "latency_repeats": 3, "ks": [5, 10, 20], "protocol": "full", "mask_history": True, "n_negatives": 100,
            "user_batch_size": 1024, "item_chunk": 65536}
    assert to_evaluator_config(flat) == RatingEvaluatorConfig(history_length=8, latency_repeats=3)
    assert to_evaluator_config({**flat, "name": "ranking"}) == RankingEvaluatorConfig(history_length=8,
                                                                                      latency_repeats=3)


@pytest.mark.parametrize("cfg, match", [
    ({"name": "rating", "ks": [5]}, "evaluator.ks is not a key of the rating evaluator"),
    ({"name": "ctr"}, "evaluator.name='ctr' is not one of rating, ranking"),
    (RankingEvaluatorConfig(ks=[0, 5]), r"evaluator.ks=\[0, 5\] must be one or more cut-offs K >= 1"),
    (RankingEvaluatorConfig(ks=[]), "evaluator.ks"),
    (RankingEvaluatorConfig(protocol="popular"), "evaluator.protocol='popular'; valid: full, sampled"),
    (RankingEvaluatorConfig(item_chunk=0), "evaluator.item_chunk=0 must be >= 1"),
    (RatingEvaluatorConfig(history_length=0), "evaluator.history_length=0 must be >= 1"),
    (RatingEvaluatorConfig(input_history="everything"), "input_history='everything'; valid: earlier_visible"),
    (RatingEvaluatorConfig(name="ranking"), "does not match the rating evaluator"),
])
def test_bad_evaluators_are_rejected_naming_the_key(cfg, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        to_evaluator_config(cfg)


def test_a_name_override_is_not_a_kind_switch() -> None:
    with pytest.raises(ConfigError, match="split.name='cold_user' does not match the chrono_ratio split"):
        to_split_config(compose_run(["split.name=cold_user"]).split)
    with pytest.raises(ConfigError, match="evaluator.name='ranking' does not match the rating evaluator"):
        to_evaluator_config(compose_run(["evaluator.name=ranking"]).evaluator)
