"""dataset=files: the user's own CSV / TSV / Parquet / atomic files through a column mapping; every
malformed input is an error naming the file and line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.data.file_data import FileColumns
from recdistill.data.loading import load_dataset
from recdistill.data.ranking_data import InteractionLists
from recdistill.data.readers.registry import get_reader
from recdistill.data.split_config import ChronoRatioSplit, LeaveOneOutSplit, RandomRatioSplit
from recdistill.data.splits import make_split
from recdistill.errors import ConfigError, DataError
from recdistill.tasks.base import task_classes

READER = get_reader("files")


def files(tmp_path: Path, path: Path | str, **options) -> object:
    """A files Config reading `path` with the cache in tmp_path."""
    columns = options.pop("columns", {})
    return READER.Config(path=str(path), cache_dir=str(tmp_path / "cache"), columns=FileColumns(**columns), **options)


def load(tmp_path: Path, path: Path | str, **options):
    return load_dataset(files(tmp_path, path, **options))


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


RATED = {"rating": "rating", "timestamp": "ts"}


# --- formats -------------------------------------------------------------------------------------

def test_csv_with_ratings_times_and_quoted_commas(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", 'user_id,item_id,rating,ts,title\n1,a,4,100,"Heat, the film"\n2,b,2,90,Up\n'
                                     '1,b,5,120,Up\n')
    data = load(tmp_path, path, columns={**RATED, "item_side": ["title"]})
    assert list(data.user_ids) == ["1", "2"] and list(data.item_ids) == ["a", "b"]
    inter = data.interactions
    assert inter["user"].tolist() == [0, 1, 0] and inter["item"].tolist() == [0, 1, 1]
    assert inter["rating"].dtype == np.float32 and inter["rating"].tolist() == [4.0, 2.0, 5.0]
    assert inter["timestamp"].dtype == np.int64 and inter["timestamp"].tolist() == [100, 90, 120]
    assert data.items["title"].tolist() == ["Heat, the film", "Up"]
    assert data.rating_scale.as_list() == [2.0, 5.0, 1.0]  # inferred


def test_tsv_keeps_quotes_and_spaces_as_written(tmp_path: Path) -> None:
    path = write(tmp_path / "c.tsv", 'user_id\titem_id\n"u1"\tx y\nu2\tx y\n')
    data = load(tmp_path, path)
    assert list(data.user_ids) == ['"u1"', "u2"] and list(data.item_ids) == ["x y"]
    assert not data.has_rating and not data.has_timestamp


def test_parquet_with_integer_ids_dates_and_half_stars(tmp_path: Path) -> None:
    pd.DataFrame({"u": [10, 2, 10], "i": ["p", "q", "q"], "stars": [0.5, 4.5, 3.0],
                  "when": pd.to_datetime(["1970-01-01 00:01:40", "2020-01-01", "1970-01-02"], utc=True,
                                         format="ISO8601")}
                 ).to_parquet(tmp_path / "s.parquet", index=False)
    data = load(tmp_path, tmp_path / "s.parquet", columns={"user": "u", "item": "i", "rating": "stars",
                                                            "timestamp": "when"})
    assert list(data.user_ids) == ["2", "10"]  # integers written as text, numeric order
    assert data.interactions["timestamp"].tolist() == [100, 1577836800, 86400]
    assert data.rating_scale.as_list() == [0.5, 4.5, 0.5]  # inferred halves


def test_atomic_files_of_any_name_bring_their_item_table(tmp_path: Path) -> None:
    write(tmp_path / "d" / "books.inter", "user_id:token\titem_id:token\trating:float\n1\t7\t3\n2\t8\t4\n")
    write(tmp_path / "d" / "books.item", "item_id:token\ttitle:token_seq\n8\tDune\n7\tEmma\n9\tUnread\n")
    data = load(tmp_path, tmp_path / "d", columns={"rating": "rating"})  # a folder: its one .inter file
    assert data.items["title"].tolist() == ["Emma", "Dune"]
    assert data.report["items_without_interactions"] == 1
    assert data.report["files"] == [str(tmp_path / "d" / "books.inter"), str(tmp_path / "d" / "books.item")]
    write(tmp_path / "bad.inter", "user_id\titem_id\n1\t2\n")
    with pytest.raises(DataError, match=r"bad\.inter:1: atomic header field 'user_id' is not like 'user_id:token'"):
        load(tmp_path, tmp_path / "bad.inter")


def test_a_folder_of_csv_parts_reads_as_one_table_in_name_order(tmp_path: Path) -> None:
    write(tmp_path / "parts" / "b.csv", "user_id,item_id\n2,y\n")
    write(tmp_path / "parts" / "a.csv", "user_id,item_id\n1,x\n")
    write(tmp_path / "parts" / "_SUCCESS", "")
    data = load(tmp_path, tmp_path / "parts")
    assert data.interactions["user"].tolist() == [0, 1] and list(data.item_ids) == ["x", "y"]
    with pytest.raises(ConfigError, match=r"cannot tell the format from the extension '\.txt'"):
        load(tmp_path, write(tmp_path / "r.txt", "user_id,item_id\n1,x\n"))
    assert load(tmp_path, tmp_path / "r.txt", format="csv").n_users == 1


def test_the_same_data_as_movielens_atomic_files(tmp_path: Path) -> None:
    movielens = get_reader("movielens_100k")
    atomic = movielens.fixtures(tmp_path)["atomic"]
    reference = movielens.read(atomic, seed=0)
    data = READER.read(files(tmp_path, atomic.local_dir, columns={"rating": "rating", "timestamp": "timestamp"}), 0)
    pd.testing.assert_frame_equal(data.interactions, reference.interactions)
    assert list(data.user_ids) == list(reference.user_ids) == ["1", "2", "10"]
    assert list(data.item_ids) == list(reference.item_ids) == ["1", "2", "5", "12"]
    assert data.rating_scale == reference.rating_scale
    assert data.items["movie_title"].tolist() == ["Toy Story", "Heat", "Casablanca", "Good Morning"]


def test_composed_through_hydra(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "who,what\nann,tea\nbob,tea\n")
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="config", overrides=["dataset=files", f"dataset.path={path}",
                                                       "dataset.columns.user=who", "dataset.columns.item=what",
                                                       f"cache_dir={tmp_path}"])
    assert cfg.dataset.min_user_interactions == 0
    data = load_dataset(cfg.dataset)
    assert list(data.user_ids) == ["ann", "bob"] and data.n_items == 1


# --- ids -----------------------------------------------------------------------------------------

def test_ids_are_text_as_written_so_005_and_5_are_two_items(tmp_path: Path) -> None:
    data = load(tmp_path, write(tmp_path / "c.csv", "user_id,item_id\n1,005\n1,5\n2,5\n"))
    assert data.n_items == 2 and data.interactions["item"].tolist() == [0, 1, 1]
    assert list(data.item_ids) == ["005", "5"]  # not canonical integers: text order


@pytest.mark.parametrize("ids, expected", [
    (["10", "2", "1", "0"], ["0", "1", "2", "10"]),  # canonical integers: numeric order
    (["10", "2", "1", "02"], ["02", "1", "10", "2"]),  # a leading zero: text order
    (["10", "2", "-1"], ["-1", "10", "2"]),  # a sign: text order
    (["b10", "b2", "a"], ["a", "b10", "b2"]),
    (["100000000000000000000", "7"], ["7", "100000000000000000000"]),  # beyond int64, still numeric
])
def test_internal_ids_follow_numeric_order_only_for_canonical_integers(tmp_path: Path, ids, expected) -> None:
    rows = "".join(f"{u},x\n" for u in ids)
    data = load(tmp_path, write(tmp_path / "c.csv", "user_id,item_id\n" + rows))
    assert list(data.user_ids) == expected
    assert [str(data.user_ids[u]) for u in data.interactions["user"]] == ids  # each row keeps its own id


def test_unknown_mapped_column_lists_the_files_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "userId,movieId\n1,2\n")
    with pytest.raises(DataError, match=r"c\.csv:1: no column 'user_id' \(dataset\.columns\.user=user_id\); the "
                                        r"file's columns: userId, movieId"):
        load(tmp_path, path)
    assert load(tmp_path, path, columns={"user": "userId", "item": "movieId"}).n_users == 1


# --- side columns ----------------------------------------------------------------------------------

def test_item_and_user_columns_become_side_tables(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "user_id,item_id,title,genre,city\n1,a,Up,Drama,Oslo\n2,a,Up,Drama,Rome\n"
                                     "1,b,Heat,Action,Oslo\n")
    data = load(tmp_path, path, columns={"item_side": ["title", "genre"], "user_side": ["city"]})
    assert data.items.index.name == "item" and data.items.to_dict("list") == {"title": ["Up", "Heat"],
                                                                              "genre": ["Drama", "Action"]}
    assert data.users["city"].tolist() == ["Oslo", "Rome"]
    assert list(data.interactions.columns) == ["user", "item"]


def test_a_conflicting_side_value_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "user_id,item_id,genre\n1,a,Drama\n\n2,b,Action\n3,a,Comedy\n")
    with pytest.raises(DataError, match=r"c\.csv:5: item 'a' has genre='Comedy' here but genre='Drama' at "
                                        r".*c\.csv:2"):
        load(tmp_path, path, columns={"item_side": ["genre"]})


def test_side_files_are_keyed_by_the_mapped_id_column(tmp_path: Path) -> None:
    inter = write(tmp_path / "c.csv", "u,i\n1,a\n2,c\n")
    items = write(tmp_path / "items.csv", "i,title\nb,Never rated\na,Up\n")
    data = load(tmp_path, inter, items=str(items), columns={"user": "u", "item": "i"})
    assert data.items["title"].tolist() == ["Up", ""]  # c has no row: empty
    repeated = write(tmp_path / "again.csv", "i,title\na,Up\nb,X\na,Up 2\n")
    with pytest.raises(DataError, match=r"again\.csv:4: item id 'a' appears again \(first at .*again\.csv:2\)"):
        load(tmp_path, inter, items=str(repeated), columns={"user": "u", "item": "i"})


# --- text encodings --------------------------------------------------------------------------------

def test_utf8_titles_are_read_exactly(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "\ufeffuser_id,item_id,title\n1,a,Café Chérie\n")  # with a byte-order mark
    data = load(tmp_path, path, columns={"item_side": ["title"]})
    assert data.items["title"].tolist() == ["Café Chérie"] and data.report["encoding"] == "utf-8"
    assert list(data.user_ids) == ["1"]


def test_latin1_files_are_read_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "c.csv", "user_id,item_id,title\n1,a,Up\n2,b,Café Chérie\n", encoding="latin-1")
    with caplog.at_level(logging.WARNING):
        data = load(tmp_path, path, columns={"item_side": ["title"]})
    assert data.items["title"].tolist() == ["Up", "Café Chérie"] and data.report["encoding"] == "latin-1"
    assert "c.csv:3 is not valid UTF-8" in caplog.text and "latin-1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load(tmp_path, write(tmp_path / "u.csv", "user_id,item_id\n1,a\n"))
    assert "latin-1" not in caplog.text  # only when UTF-8 fails


# --- ratings and times -----------------------------------------------------------------------------

def test_implicit_feedback_has_no_rating_and_the_rating_task_refuses_it(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "user_id,item_id\n1,a\n1,b\n2,a\n")
    data = load(tmp_path, path)
    assert not data.has_rating and data.rating_scale is None
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="config", overrides=["dataset=files", f"dataset.path={path}", "split=random_ratio",
                                                       f"cache_dir={tmp_path / 'cache'}"])
    task = task_classes()["rating"](cfg, torch.device("cpu"))
    with pytest.raises(ConfigError, match="task=rating needs explicit ratings; dataset 'files' has no rating column; "
                                          "use task=ranking or map dataset.columns.rating"):
        task.prepare(tmp_path / "run")


def test_without_timestamps_chronological_splits_refuse_and_random_ratio_works(tmp_path: Path) -> None:
    rows = "".join(f"{u},{i}\n" for u in range(4) for i in (3, 1, 2, 0, 4))
    data = load(tmp_path, write(tmp_path / "c.csv", "user_id,item_id\n" + rows))
    assert not data.has_timestamp
    for split in (ChronoRatioSplit(), LeaveOneOutSplit()):
        with pytest.raises(ConfigError, match=rf"split.name='{split.name}' orders each user's interactions by time, "
                                              r"but the data has no timestamp column.*split=random_ratio.*split=given"):
            make_split(data.interactions, split, seed=0)
    split = make_split(data.interactions, RandomRatioSplit(ratios=[0.6, 0.2, 0.2]), seed=0)
    assert split.sizes() == {"train": 12, "valid": 4, "test": 4}
    lists = InteractionLists.from_frame(data.interactions, data.n_users)  # file order stands in for time
    first = data.item_ids[lists.items[:5].numpy()]
    assert list(first) == ["3", "1", "2", "0", "4"]


def test_times_may_be_iso_dates_and_negative_ones_are_reported(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "c.csv", "user_id,item_id,ts\n1,a,1970-01-01T00:00:10Z\n1,b,-5\n2,a,12.9\n")
    with caplog.at_level(logging.WARNING):
        data = load(tmp_path, path, columns={"timestamp": "ts"})
    assert data.interactions["timestamp"].tolist() == [10, -5, 12]
    assert data.report["suspicious"] == {"negative_timestamps": 1, "future_timestamps": 0}
    assert "1 negative and 0 future timestamps" in caplog.text
    assert "suspicious" not in load(tmp_path, write(tmp_path / "ok.csv", "user_id,item_id,ts\n1,a,5\n"),
                                    columns={"timestamp": "ts"}).report


def test_half_stars_with_an_explicit_or_inferred_scale(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "user_id,item_id,rating\n1,a,0.5\n1,b,3.5\n2,a,5\n")
    inferred = load(tmp_path, path, columns={"rating": "rating"})
    explicit = load(tmp_path, path, columns={"rating": "rating"}, rating_scale=[0.5, 5, 0.5])
    assert inferred.rating_scale.as_list() == explicit.rating_scale.as_list() == [0.5, 5.0, 0.5]
    assert explicit.rating_scale.n_classes == 10
    assert explicit.interactions["rating"].tolist() == [0.5, 3.5, 5.0]


def test_a_rating_off_the_scale_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "user_id,item_id,rating\n1,a,4\n1,b,3.5\n2,a,5\n")
    with pytest.raises(DataError, match=r"c\.csv:3: rating 3.5 is not on the rating scale 1..5 by 1"):
        load(tmp_path, path, columns={"rating": "rating"}, rating_scale=[1, 5, 1])
    between = write(tmp_path / "d.csv", "user_id,item_id,rating\n1,a,4\n\n1,b,3.7\n")
    with pytest.raises(DataError, match=r"d\.csv:4: rating 3.7 is not on the rating scale"):
        load(tmp_path, between, columns={"rating": "rating"})  # neither whole nor half: named where it is


@pytest.mark.parametrize("text, message", [
    ("user_id,item_id,rating,ts\n1,a,4,5\n2,b,4\n", r"c\.csv:3: expected 4 fields separated by ',', found 3"),
    ("user_id,item_id,rating,ts\n1,a,4,5\n\n2,b,4,5,6\n", r"c\.csv:4: expected 4 fields separated by ',', found 5"),
    ("user_id,item_id,rating,ts\n1,a,4,5\n2,b,four,5\n", r"c\.csv:3: rating 'four' \(column 'rating'\) is not a"),
    ("user_id,item_id,rating,ts\n1,a,4,5\n2,b,,5\n", r"c\.csv:3: rating '' \(column 'rating'\) is not a number"),
    ("user_id,item_id,rating,ts\n1,a,4,yesterday\n", r"c\.csv:2: timestamp 'yesterday' \(column 'ts'\) is neither"),
    ("user_id,item_id,rating,ts\n1,a,4,5\n,b,4,5\n", r"c\.csv:3: user id is empty"),
    ('user_id,item_id,rating,ts\n1,"a\nb",4,5\n2,b,9.25,5\n', r"c\.csv:4: rating 9.25 is not on the rating scale"),
    ("user_id,item_id,rating,ts\n", r"c\.csv: no interactions \(only a header\)"),
    ("", r"c\.csv: file is empty"),
])
def test_malformed_files_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "c.csv", text)
    with pytest.raises(DataError, match=message):
        load(tmp_path, path, columns=RATED, rating_scale=[1, 5, 1])


def test_parquet_rows_are_named_by_number(tmp_path: Path) -> None:
    pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", None]}).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"p\.parquet: row 2: item id is missing"):
        load(tmp_path, tmp_path / "p.parquet")


def test_the_fingerprint_covers_every_file_read(tmp_path: Path) -> None:
    inter = write(tmp_path / "c.csv", "user_id,item_id\n1,a\n")
    items = write(tmp_path / "items.csv", "item_id,title\na,Up\n")
    first = load(tmp_path, inter, items=str(items)).fingerprint
    assert first == load(tmp_path, inter, items=str(items)).fingerprint
    write(items, "item_id,title\na,Up!\n")
    second = load(tmp_path, inter, items=str(items)).fingerprint
    write(inter, "user_id,item_id\n1,a\n1,a\n")
    assert len({first, second, load(tmp_path, inter, items=str(items)).fingerprint}) == 3
