"""split=given: train / valid / test from three files; ids over their union, nothing filtered,
overlaps reported, the key following the files' content, and a whole ranking run on it."""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.data.config import DatasetConfig
from recdistill.data.given_split import load_given
from recdistill.data.ranking_data import RankingData
from recdistill.data.split_cache import load_or_make_split
from recdistill.data.split_config import GivenSplit
from recdistill.data.splits import make_split
from recdistill.errors import ConfigError
from recdistill.run.spine import run

DATASET_KEYS = {f.name for f in fields(DatasetConfig)}


def write_parts(folder: Path, train: str, valid: str, test: str, header: str = "user_id\titem_id\n") -> GivenSplit:
    """Three TSV files with a header; the GivenSplit naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.tsv").write_text(header + rows, encoding="utf-8")
    return GivenSplit(train=str(folder / "train.tsv"), valid=str(folder / "valid.tsv"), test=str(folder / "test.tsv"))


def dataset(tmp_path: Path, **options) -> dict:
    return {"name": "files", "cache_dir": str(tmp_path / "cache"), **options}


def load(tmp_path: Path, split: GivenSplit, run_dir: Path | None = None, **options):
    run_dir = run_dir or tmp_path / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    return load_or_make_split(dataset(tmp_path, **options), split, 0, tmp_path / "cache", run_dir)


TRAIN = "u1\ti3\nu1\ti1\nu2\ti2\nu10\ti1\n"
VALID = "u1\ti2\nu2\ti1\n"
TEST = "u1\ti9\nu3\ti2\n"  # i9: never in train; u3: only in test


def test_parts_are_the_files_in_their_row_order_with_ids_over_the_union(tmp_path: Path) -> None:
    data, split, _ = load(tmp_path, write_parts(tmp_path / "d", TRAIN, VALID, TEST))
    assert list(data.user_ids) == ["u1", "u10", "u2", "u3"] and list(data.item_ids) == ["i1", "i2", "i3", "i9"]
    raw = {name: [(str(data.user_ids[u]), str(data.item_ids[i])) for u, i in zip(part["user"], part["item"])]
           for name, part in (("train", split.train), ("valid", split.valid), ("test", split.test))}
    assert raw == {"train": [("u1", "i3"), ("u1", "i1"), ("u2", "i2"), ("u10", "i1")],
                   "valid": [("u1", "i2"), ("u2", "i1")], "test": [("u1", "i9"), ("u3", "i2")]}
    assert "part" not in split.train.columns and split.test["row"].tolist() == [6, 7]
    assert data.report["given_split"]["items_not_in_train"] == 1
    assert data.report["given_split"]["users_not_in_train"] == 1


def test_a_test_item_absent_from_train_is_rankable(tmp_path: Path) -> None:
    data, split, _ = load(tmp_path, write_parts(tmp_path / "d", TRAIN, VALID, TEST))
    lists = RankingData({"train": split.train, "valid": split.valid, "test": split.test}, data.n_users,
                        data.n_items, max_length=4)
    unseen = int(np.flatnonzero(data.item_ids == "i9")[0])
    assert lists.n_items == 4 and unseen < lists.n_items
    assert unseen not in set(lists.targets("train").items.tolist())
    assert unseen in set(lists.targets("test").items.tolist())


FILTERS = [(key, value) for key, value in (("min_user_interactions", 2), ("min_item_interactions", 2),
                                           ("positive_threshold", 4.0)) if key in DATASET_KEYS]


@pytest.mark.parametrize("key, value", FILTERS)
def test_a_filter_is_refused_naming_the_key(tmp_path: Path, key: str, value: float) -> None:
    split = write_parts(tmp_path / "d", TRAIN, VALID, TEST)
    with pytest.raises(ConfigError, match=rf"dataset\.{key}={value} would alter a given split \(split=given\)"):
        load(tmp_path, split, **{key: value})


def test_the_dataset_must_be_files_without_a_path(tmp_path: Path) -> None:
    split = write_parts(tmp_path / "d", TRAIN, VALID, TEST)
    with pytest.raises(ConfigError, match=r"split=given reads split.train / split.valid / split.test with the column "
                                          r"mapping of dataset=files, but dataset=synthetic; set dataset=files"):
        load_given({"name": "synthetic"}, split)
    with pytest.raises(ConfigError, match=r"dataset.path='x.csv' is set, but split=given"):
        load(tmp_path, split, path="x.csv")
    with pytest.raises(ConfigError, match=r"split=given needs split.valid=FILE"):
        load(tmp_path, GivenSplit(train=split.train, test=split.test))
    with pytest.raises(ConfigError, match=r"split=given is made from its three files"):
        make_split(pd.DataFrame({"user": [0], "item": [0]}), split, seed=0)


def test_overlaps_between_files_are_counted_logged_and_recorded(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    split = write_parts(tmp_path / "d", TRAIN, VALID + "u1\ti1\n", TEST + "u1\ti1\nu2\ti1\n")
    with caplog.at_level(logging.WARNING):
        data, _, _ = load(tmp_path, split)
    overlaps = data.report["given_split"]["overlaps"]
    assert overlaps == {"train_valid": 1, "train_test": 1, "valid_test": 2}
    assert "pairs in more than one file" in caplog.text
    recorded = json.loads((tmp_path / "run" / "split.json").read_text())
    assert recorded["name"] == "given" and recorded["given"]["overlaps"] == overlaps
    assert recorded["sizes"] == {"train": 4, "valid": 3, "test": 4}  # every row kept


def test_pairs_repeated_inside_a_file_need_keep_all(tmp_path: Path) -> None:
    split = write_parts(tmp_path / "d", TRAIN + "u1\ti3\n", VALID, TEST)
    with pytest.raises(ConfigError, match=r"dataset.duplicates=keep_last would drop rows of a given split"):
        load(tmp_path, split)
    _, parts, _ = load(tmp_path, split, duplicates="keep_all")
    assert len(parts.train) == 5


def test_editing_a_file_makes_a_new_split_key(tmp_path: Path) -> None:
    split = write_parts(tmp_path / "d", TRAIN, VALID, TEST)
    first = load(tmp_path, split)[2]
    assert load(tmp_path, split)[2] == first  # reused
    Path(split.test).write_text("user_id\titem_id\nu1\ti9\nu3\ti3\n", encoding="utf-8")
    edited, parts, second = load(tmp_path, split)
    assert second != first and str(edited.item_ids[parts.test["item"].iloc[1]]) == "i3"
    swapped = GivenSplit(train=split.train, valid=split.test, test=split.valid)  # same files, other parts
    assert load(tmp_path, swapped)[2] not in (first, second)


def test_a_ranking_run_on_given_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = {name: [] for name in ("train", "valid", "test")}
    for user in range(12):
        items = rng.choice(20, size=7, replace=False)
        rows["train"] += [f"{user}\t{item}\n" for item in items[:5]]
        rows["valid"].append(f"{user}\t{items[5]}\n")
        rows["test"].append(f"{user}\t{items[6]}\n")
    rows["test"].append("0\t25\n")  # an item only test has
    split = write_parts(tmp_path / "d", *("".join(rows[name]) for name in ("train", "valid", "test")))
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="config", overrides=[
            "task=ranking", "dataset=files", "split=given", f"split.train={split.train}", f"split.valid={split.valid}",
            f"split.test={split.test}", "teacher=bpr_mf_large", "teacher.dim=8", "student=bpr_mf_small",
            "distill=none", "evaluator=ranking", "evaluator.latency_repeats=1", "trainer=ranking_debug",
            "device=cpu", f"cache_dir={tmp_path / 'cache'}", "train_student_alone=false"])
    metrics = run(cfg, tmp_path / "run")
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["run"]["protocol"]["split"] == {"name": "given", "train": split.train, "valid": split.valid,
                                                   "test": split.test}
    assert metrics["run"]["protocol"]["split"]["name"] == "given"
    assert "ndcg@10" in written["teacher"]["test"]
    assert json.loads((tmp_path / "run" / "split.json").read_text())["given"]["items_not_in_train"] >= 1
