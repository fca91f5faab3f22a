"""Mistakes a user makes with their own data, caught before any training with one clear message
(found by a fresh-user trial): text models on items without a title, milli/nanosecond times,
filters that leave nothing, a positive threshold on the rating task, teacher top-K lists the
catalogue or the strategy rules out."""

from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.data.loading import load_dataset
from recdistill.data.text_embeddings import item_texts
from recdistill.errors import ConfigError, DataError
from recdistill.run.spine import run


def compose_run(*overrides: str):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=["device=cpu", *overrides])


def files(path: Path, cache: Path, **columns: str) -> dict:
    return {"name": "files", "path": str(path), "cache_dir": str(cache),
            "columns": {"user": "u", "item": "i", **columns}}


def test_item_text_reads_what_the_table_has():
    assert item_texts(pd.DataFrame({"title": ["Heat", "Up"], "year": ["1995", "circa 2009"]})) == ["Heat (1995).", "Up."]
    assert item_texts(pd.DataFrame({"title": ["Heat"], "genres": ["Action|Crime"]})) == [
        "Heat. Genres: Action, Crime."]
    with pytest.raises(ConfigError, match=r"read a 'title' column, but the item table has \['name'\]; .*text_dim=0"):
        item_texts(pd.DataFrame({"name": ["Heat"]}))


@pytest.mark.parametrize("stamp", ["1577836800000", "1577836800000000000"])
def test_milli_and_nanosecond_times_are_named_not_read_as_seconds(tmp_path, stamp):
    (tmp_path / "log.csv").write_text(f"u,i,t\n1,a,1577836800\n2,b,{stamp}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"log.csv:3: timestamp '{stamp}' \(column 't'\) is beyond the year "
                                        r"9999 as Unix seconds \(1 such rows\); milliseconds or nanoseconds\?"):
        load_dataset(files(tmp_path / "log.csv", tmp_path / "cache", timestamp="t"))


def test_a_positive_threshold_drops_the_users_and_items_it_empties_and_nothing_left_is_an_error(tmp_path):
    rows = "u,i,r\n1,a,5\n1,b,2\n2,b,1\n2,c,4\n3,c,2\n"
    (tmp_path / "log.csv").write_text(rows, encoding="utf-8")
    cfg = files(tmp_path / "log.csv", tmp_path / "cache", rating="r")
    data = load_dataset({**cfg, "positive_threshold": 4})
    assert list(data.user_ids) == ["1", "2"] and list(data.item_ids) == ["a", "c"]  # user 3 and item b had none left
    assert data.report["filters"]["k_core"]["users_dropped"] == 1
    with pytest.raises(DataError, match=r"the filters leave no interaction \(positive_threshold=6"):
        load_dataset({**cfg, "positive_threshold": 6, "rating_scale": [1, 10, 1]})


def test_a_positive_threshold_on_the_rating_task_is_refused(tmp_path):
    cfg = compose_run("+experiment=synthetic_kd", f"cache_dir={tmp_path}", "dataset.positive_threshold=4")
    with pytest.raises(ConfigError, match="dataset.positive_threshold=4.0 keeps only high ratings, which is for ranking"):
        run(cfg, tmp_path / "run")


@pytest.mark.parametrize("overrides, message", [
    (["distill.teacher_topk=10"], r"distill.terms.rrd.n_interesting=40, but the teacher knowledge keeps only the top "
                                  r"10 items \(distill.teacher_topk\)"),
    (["distill.teacher_topk=1000"], r"distill.teacher_topk=1000 must be below the number of items"),
])
def test_teacher_lists_the_run_rules_out_stop_it_before_the_teacher_trains(tmp_path, overrides, message):
    cfg = compose_run("+experiment=synthetic_rank_kd", f"cache_dir={tmp_path / 'cache'}", *overrides)
    with pytest.raises(ConfigError, match=message):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "cache" / "teachers").exists() or not any((tmp_path / "cache" / "teachers").iterdir())


def test_yyyymmdd_times_warn_and_one_column_for_two_keys_is_refused(tmp_path, caplog):
    (tmp_path / "log.csv").write_text("u,i,t\n1,a,20200101\n2,b,20200315\n", encoding="utf-8")
    load_dataset(files(tmp_path / "log.csv", tmp_path / "cache", timestamp="t"))
    assert "if they are YYYYMMDD dates, they are being read as seconds after 1970" in caplog.text
    with pytest.raises(ConfigError, match="dataset.columns.user and dataset.columns.item name the same column 'u'"):
        load_dataset({**files(tmp_path / "log.csv", tmp_path / "cache"), "columns": {"user": "u", "item": "u"}})
