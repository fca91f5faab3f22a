"""MovieLens readers: native and atomic files of the same data give the same RecData."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recdistill.data.filters import k_core
from recdistill.data.loading import load_dataset
from recdistill.data.report import describe
from recdistill.data.movielens import GENRES, read_atomic, read_native, split_title_year
from recdistill.data.readers.movielens_100k import MovieLens100K
from recdistill.errors import ConfigError, DataError

# raw item id, native title, release date, genres (native names), RecBole title, year, class
ITEMS = [
    (1, "Toy Story (1995)", "01-Jan-1995", ["Animation", "Children's", "Comedy"],
     "Toy Story", "1995", "Animation Children's Comedy"),
    (2, "Usual Suspects, The (1995)", "14-Aug-1995", ["Crime", "Thriller"],
     "Usual Suspects, The", "1995", "Crime Thriller"),
    (3, "Misérables, Les (1995)", "01-Jan-1995", ["Drama", "Musical"], "Misérables, Les", "1995", "Drama Musical"),
    (5, "Land Before Time III: The Time of the Great Giving (1995) (V)", "01-Jan-1995",
     ["Animation", "Children's"], "Land Before Time III: The Time of the Great Giving (1995)", "V",
     "Animation Children's"),
    (7, "Good Morning (1971)", "4-Feb-1971", ["unknown"], "Good Morning", "1971", "unknown"),
    (12, "unknown", "", ["unknown"], "unkonwn", "unkonwn", "unknown"),
]
USERS = [(1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"), (10, 23, "M", "writer", "32067")]
INTER = [(10, 3, 4, 881250949), (1, 1, 5, 874965758), (2, 12, 1, 888550871), (1, 2, 3, 876893171),
         (10, 1, 2, 881250950), (2, 5, 4, 888551000), (1, 7, 4, 876893119), (10, 12, 3, 881251000),
         (2, 1, 5, 888552000), (1, 3, 1, 878542960)]


def write_native(directory: Path) -> Path:
    """u.data, u.item (latin-1) and u.user for the test data."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in INTER))
    lines = []
    for item, title, date, genres, *_ in ITEMS:
        flags = "|".join("1" if g in genres else "0" for g in GENRES)
        lines.append(f"{item}|{title}|{date}||http://us.imdb.com/x|{flags}\n")
    (directory / "u.item").write_bytes("".join(lines).encode("latin-1"))
    (directory / "u.user").write_text("".join("|".join(map(str, u)) + "\n" for u in USERS))
    return directory


def write_atomic(directory: Path) -> Path:
    """ml-100k.inter/.item/.user (RecBole atomic format) for the same data."""
    directory.mkdir(parents=True, exist_ok=True)
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    (directory / "ml-100k.inter").write_text(inter + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in INTER))
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    item += "".join(f"{i}\t{title}\t{year}\t{cls}\n" for i, _, _, _, title, year, cls in ITEMS)
    (directory / "ml-100k.item").write_text(item, encoding="utf-8")
    user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    (directory / "ml-100k.user").write_text(user + "".join("\t".join(map(str, u)) + "\n" for u in USERS))
    return directory


def assert_same(a, b) -> None:
    """Two RecData hold identical tables."""
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.users, b.users)
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_array_equal(a.item_ids, b.item_ids)


def test_native_and_atomic_give_identical_tables(tmp_path: Path) -> None:
    native = read_native(write_native(tmp_path / "native"))
    atomic = read_atomic(write_atomic(tmp_path / "atomic"))
    assert_same(native, atomic)


def test_native_tables_hold_canonical_values(tmp_path: Path) -> None:
    data = read_native(write_native(tmp_path))
    assert list(data.user_ids) == ["1", "2", "10"]  # numeric, not lexical, order
    assert list(data.item_ids) == ["1", "2", "3", "5", "7", "12"]
    inter = data.interactions
    assert inter.dtypes.astype(str).to_dict() == {"user": "int64", "item": "int64", "rating": "float32",
                                                  "timestamp": "int64"}
    assert inter.iloc[0].tolist() == [2, 2, 4.0, 881250949]  # raw (10, 3) -> internal (2, 2), file order kept
    items = data.items
    assert items["title"].tolist() == ["Toy Story", "Usual Suspects, The", "Misérables, Les",
                                       "Land Before Time III: The Time of the Great Giving", "Good Morning", "unknown"]
    assert items["year"].tolist()[:5] == [1995, 1995, 1995, 1995, 1971] and items["year"].isna().tolist()[5]
    assert str(items["year"].dtype) == "Int64"
    assert items["genres"].tolist() == ["Animation|Children's|Comedy", "Crime|Thriller", "Drama|Musical",
                                        "Animation|Children's", "", ""]
    assert data.users.loc[2].tolist() == [23, "M", "writer"]


def test_raw_ids_are_kept_as_written_and_ordered_numerically(tmp_path: Path) -> None:
    directory = write_atomic(tmp_path)
    for name in ("ml-100k.inter", "ml-100k.item"):  # item 7 written as 007 in both files
        path = directory / name
        path.write_text("\n".join(line.replace("\t7\t", "\t007\t") if name.endswith("inter") else
                                  ("007" + line[1:] if line.startswith("7\t") else line)
                                  for line in path.read_text().splitlines()) + "\n")
    data = read_atomic(directory)
    assert list(data.item_ids) == ["1", "2", "3", "5", "007", "12"] and data.item_ids.dtype.kind == "U"
    assert data.items["title"].tolist()[4] == "Good Morning"


def test_atomic_genres_are_put_in_canonical_order(tmp_path: Path) -> None:
    directory = write_atomic(tmp_path)
    path = directory / "ml-100k.item"
    path.write_text(path.read_text().replace("Animation Children's Comedy", "Comedy Animation Children's"))
    assert read_atomic(directory).items["genres"][0] == "Animation|Children's|Comedy"


def test_split_title_year() -> None:
    title, year = split_title_year(pd.Series(["Seven (Se7en) (1995)", "unknown", "2001: A Space Odyssey (1968)"]))
    assert title.tolist() == ["Seven (Se7en)", "unknown", "2001: A Space Odyssey"]
    assert year.tolist()[::2] == [1995, 1968] and year.isna().tolist()[1]


def _corrupt(path: Path, line: int, new: str) -> None:
    lines = path.read_text(encoding="latin-1").splitlines()
    lines[line - 1] = new
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")


@pytest.mark.parametrize(("file", "line", "content", "message"), [
    ("u.data", 3, "2\t12\t1", "u.data:3: expected 4 columns"),
    ("u.data", 4, "1\t2\tgood\t876893171", "u.data:4: rating 'good' is not a number"),
    ("u.data", 2, "1\t1\t6\t874965758", "u.data:2: rating out of range"),
    ("u.data", 5, "10\t1\t2\tyesterday", "u.data:5: timestamp 'yesterday' is not a number"),
    ("u.data", 6, "x2\t5\t4\t888551000", "u.data:6: user id 'x2' is not an integer"),
    ("u.data", 1, "10\t99\t4\t881250949", "u.data:1: item id 99 is not in u.item"),
    ("u.item", 2, "2|Usual Suspects, The (1995)|14-Aug-1995", "u.item:2: expected 24 columns"),
    ("u.user", 3, "1|30|M|writer|12345", "u.user:3: duplicate user id"),
])
def test_native_malformed_input_names_file_and_line(tmp_path: Path, file: str, line: int, content: str,
                                                    message: str) -> None:
    directory = write_native(tmp_path)
    _corrupt(directory / file, line, content)
    with pytest.raises(DataError, match=message):
        read_native(directory)


@pytest.mark.parametrize(("file", "line", "content", "message"), [
    ("ml-100k.inter", 1, "196\t242\t3\t881250949", r"ml-100k.inter:1: missing atomic header"),
    ("ml-100k.inter", 3, "1\t1\t5\t874965758\t9", r"ml-100k.inter:3: expected 4 columns"),
    ("ml-100k.inter", 4, "2\t12\t0\t888550871", r"ml-100k.inter:4: rating out of range"),
    ("ml-100k.item", 1, "item_id:token\ttitle:token_seq\trelease_year:token\tclass:token_seq",
     r"ml-100k.item:1: header lacks movie_title"),
    ("ml-100k.item", 2, "1\tToy Story\t1995\tAnimation Cartoon", r"ml-100k.item:2: unknown genre 'Cartoon'"),
    ("ml-100k.user", 2, "1\tforty\tM\ttechnician\t85711", r"ml-100k.user:2: age 'forty' is not an integer"),
])
def test_atomic_malformed_input_names_file_and_line(tmp_path: Path, file: str, line: int, content: str,
                                                    message: str) -> None:
    directory = write_atomic(tmp_path)
    _corrupt(directory / file, line, content)
    with pytest.raises(DataError, match=message):
        read_atomic(directory)


def test_empty_files_are_rejected(tmp_path: Path) -> None:
    native, atomic = write_native(tmp_path / "n"), write_atomic(tmp_path / "a")
    (native / "u.data").write_text("\n\n")
    with pytest.raises(DataError, match=r"u.data: file is empty"):
        read_native(native)
    (atomic / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
    with pytest.raises(DataError, match=r"ml-100k.inter: file has a header but no rows"):
        read_atomic(atomic)


def test_side_tables_are_optional(tmp_path: Path) -> None:
    directory = write_native(tmp_path)
    (directory / "u.user").unlink()
    data = read_native(directory)
    assert data.users is None and data.items is not None and len(data.interactions) == len(INTER)


def test_load_dataset_local_filters_sparse_users(tmp_path: Path) -> None:
    write_atomic(tmp_path / "ml")
    cfg = MovieLens100K.Config(source="local", local_dir=str(tmp_path / "ml"), cache_dir=str(tmp_path / "cache"),
                               min_user_interactions=4)
    data = load_dataset(cfg)
    assert list(data.user_ids) == ["1"]  # users 2 and 10 have 3 interactions each
    assert list(data.item_ids) == ["1", "2", "3", "7"]
    assert data.interactions["user"].eq(0).all() and sorted(data.interactions["item"]) == [0, 1, 2, 3]
    assert data.items["title"].tolist() == ["Toy Story", "Usual Suspects, The", "Misérables, Les", "Good Morning"]
    assert len(data.users) == 1 and data.users.loc[0, "occupation"] == "technician"


def test_filter_keeps_everything_when_no_user_is_sparse(tmp_path: Path) -> None:
    data = read_native(write_native(tmp_path))
    assert k_core(data, 3, 0) == (data, None)


def test_load_dataset_rejects_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not one of .*movielens_100k, .*synthetic"):
        load_dataset({"name": "netflix"})
    with pytest.raises(ConfigError, match="auto, grouplens, recbole, local"):
        load_dataset(MovieLens100K.Config(source="ftp", cache_dir=str(tmp_path)))


def test_describe(tmp_path: Path) -> None:
    info = describe(read_native(write_native(tmp_path)))
    assert (info["n_users"], info["n_items"], info["n_interactions"]) == (3, 6, 10)
    assert info["density"] == pytest.approx(10 / 18)
    assert info["rating_histogram"] == {"1": 2, "2": 1, "3": 2, "4": 3, "5": 2}
    assert info["interactions_per_user"]["min"] == 3 and info["interactions_per_user"]["max"] == 4
    assert info["time_span"] == {"first": "1997-09-22T22:02:38+00:00", "last": "1998-02-27T04:00:00+00:00",
                                 "days": 157.2}
