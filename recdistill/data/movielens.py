"""Read MovieLens-100K from GroupLens' native files or RecBole's atomic files into one RecData.

Both readers give identical tables for the same data: titles without the trailing "(1995)",
the year as Int64 (from the title, where a trailing "(V)" video marker is dropped; native files
fall back to the release date's year when the title has none), genres
'|'-joined in GENRES order with 'unknown' dropped, and raw ids (integers, kept as the text the file
holds) sorted numerically -> 0..n-1.
Known RecBole quirks are undone: item 267's 'unkonwn' title/year and item 1412, whose
"(1995)" RecBole left in the title while putting 'V' in release_year.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recdistill.data.tables import RecData
from recdistill.errors import DataError

log = logging.getLogger(__name__)

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western")
KNOWN_GENRES = GENRES[1:]  # 'unknown' means "no genre" and becomes ''
_TITLE_YEAR = r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)(?:\s*\([A-Z]{1,3}\))?\s*$"
_ATOMIC_TYPO = "unkonwn"  # RecBole's spelling of 'unknown' for item 267


_INT = r"[+-]?\d+"
_FLOAT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


class _Table:
    """Fields of a delimited file as strings, with the 1-based line number of every row."""

    def __init__(self, path: Path, fields: pd.DataFrame, lines: np.ndarray) -> None:
        self.path, self.fields, self.lines = path, fields, lines

    def fail(self, mask: pd.Series | np.ndarray, message: str) -> None:
        """Raise DataError at the first row where `mask` is True, if any."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            row = int(np.argmax(mask))
            raise DataError(f"{self.path}:{self.lines[row]}: {message}")

    def _parse(self, column: str | int, what: str, pattern: str, kind: str, nullable: bool) -> pd.Series:
        text = self.fields[column].str.strip()
        bad = ~text.str.fullmatch(pattern).to_numpy(dtype=bool)
        if nullable:
            bad &= (text != "").to_numpy(dtype=bool)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{self.path}:{self.lines[row]}: {what} {text.iloc[row]!r} is not {kind}")
        target = pa.int64() if kind == "an integer" else pa.float64()
        values = pc.cast(pc.if_else(pc.equal(pa.array(text), ""), None, pa.array(text)), target)
        return pd.Series(values, dtype="Int64" if target == pa.int64() else "float64")

    def ints(self, column: str | int, what: str, nullable: bool = False) -> pd.Series:
        """Parse an integer column (Int64); empty cells become <NA> when `nullable`."""
        return self._parse(column, what, _INT, "an integer", nullable)

    def numbers(self, column: str | int, what: str) -> np.ndarray:
        """Parse a numeric column into float64."""
        return self._parse(column, what, _FLOAT, "a number", False).to_numpy()

    def ids(self, column: str | int, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Check an integer id column; return (raw ids as the file writes them, their int64 values)."""
        values = self.ints(column, what).to_numpy(dtype="int64")
        return self.fields[column].str.strip().to_numpy(dtype=str), values


def _read(path: Path, sep: str, encoding: str, n_cols: int | None = None, header: bool = False) -> _Table:
    """Split a delimited file into string fields, checking the column count of every line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not valid {encoding} text ({exc.reason})") from exc
    lines = pc.utf8_rtrim(pa.array(text.split("\n")), characters="\r")
    numbers = np.arange(1, len(lines) + 1)
    keep = pc.not_equal(pc.utf8_trim_whitespace(lines), "").to_numpy(zero_copy_only=False)
    lines, numbers = lines.filter(pa.array(keep)), numbers[keep]
    if len(lines) == 0:
        raise DataError(f"{path}: file is empty")
    names: list[str | int] = list(range(n_cols or 0))
    if header:
        first = lines[0].as_py()
        names = [h.strip() for h in first.split(sep)]
        if not all(re.fullmatch(r"[^:\s]+:[a-z_]+", h) for h in names):
            raise DataError(f"{path}:{numbers[0]}: missing atomic header like 'user_id:token' "
                            f"(found {first[:80]!r})")
        names = [h.split(":")[0] for h in names]
        lines, numbers = lines[1:], numbers[1:]
        if len(lines) == 0:
            raise DataError(f"{path}: file has a header but no rows")
    counts = pc.count_substring(lines, sep).to_numpy() + 1
    bad = counts != len(names)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}:{numbers[row]}: expected {len(names)} columns separated by {sep!r}, "
                        f"found {counts[row]}")
    parts = pc.split_pattern(lines, pattern=sep).flatten()  # row-major (n * k,)
    k = len(names)
    fields = pd.DataFrame({name: pd.Series(parts.take(pa.array(np.arange(j, len(parts), k))), dtype="str")
                           for j, name in enumerate(names)})
    return _Table(path, fields, numbers)


def _require(table: _Table, columns: tuple[str, ...]) -> None:
    """Raise DataError when an atomic file lacks a needed column."""
    missing = [c for c in columns if c not in table.fields.columns]
    if missing:
        raise DataError(f"{table.path}:1: header lacks {', '.join(missing)} "
                        f"(has {', '.join(map(str, table.fields.columns))})")


def split_title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Split 'Toy Story (1995)' into ('Toy Story', 1995); titles without a year keep <NA>."""
    titles = titles.astype(object).str.strip()
    parts = titles.str.extract(_TITLE_YEAR)
    has_year = parts["year"].notna()
    title = titles.where(~has_year, parts["title"])
    return title, pd.to_numeric(parts["year"]).astype("Int64")


def join_genres(flags: np.ndarray) -> pd.Series:
    """Turn an (n, len(KNOWN_GENRES)) 0/1 matrix into '|'-joined genre strings ('' when none)."""
    names = np.array([g + "|" for g in KNOWN_GENRES], dtype=object)
    joined = flags.astype(bool).astype(object) @ names if len(flags) else np.array([], dtype=object)
    return pd.Series(joined, dtype=object).str.rstrip("|")


def _ids(raw: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map raw ids to 0..n-1 in numeric order (ties, like "5" and "05", by text); return
    (internal ids, raw ids in internal order)."""
    codes, uniq = pd.factorize(raw)
    uniq = np.asarray(uniq, dtype=str)
    uniq_values = np.empty(len(uniq), dtype="int64")
    uniq_values[codes] = values
    order = np.lexsort((uniq, uniq_values))
    rank = np.empty(len(uniq), dtype="int64")
    rank[order] = np.arange(len(uniq))
    return rank[codes], uniq[order]


def _align(side: _Table, side_raw: np.ndarray, uniq: np.ndarray, owner: _Table, owner_raw: np.ndarray,
           what: str) -> np.ndarray:
    """Positions in `side` of each raw id in `uniq`, checking uniqueness and coverage."""
    side.fail(pd.Series(side_raw).duplicated().to_numpy(), f"duplicate {what} id")
    pos = pd.Index(side_raw).get_indexer(uniq)
    if (pos < 0).any():
        missing = uniq[pos < 0]
        owner.fail(pd.Series(owner_raw).isin(missing).to_numpy(), f"{what} id {missing[0]} is not in {side.path.name}")
    extra = len(side_raw) - len(uniq)
    if extra:
        log.info("%s: %d %ss have no interactions and are left out", side.path.name, extra, what)
    return pos


Side = tuple[_Table, tuple[np.ndarray, np.ndarray], pd.DataFrame]  # file, (raw ids, values), rows


def _build(name: str, inter: _Table, user: tuple[np.ndarray, np.ndarray], item: tuple[np.ndarray, np.ndarray],
           rating: np.ndarray, timestamp: np.ndarray, items: Side | None, users: Side | None) -> RecData:
    """Validate ratings, map ids, align the side tables and assemble a RecData."""
    inter.fail((rating < 1) | (rating > 5), "rating out of range 1..5")
    user_idx, user_raw = _ids(*user)
    item_idx, item_raw = _ids(*item)
    interactions = pd.DataFrame({"user": user_idx, "item": item_idx, "rating": rating.astype("float32"),
                                 "timestamp": np.floor(timestamp).astype("int64")})
    tables: list[pd.DataFrame | None] = []
    for side, (raw, _), uniq, what in ((items, item, item_raw, "item"), (users, user, user_raw, "user")):
        if side is None:
            tables.append(None)
            continue
        table, (side_raw, _), frame = side
        pos = _align(table, side_raw, uniq, inter, raw, what)
        tables.append(frame.iloc[pos].reset_index(drop=True).rename_axis(what))
    return RecData(name=name, interactions=interactions, items=tables[0], users=tables[1],
                   user_ids=user_raw, item_ids=item_raw)


def _item_frame(title: pd.Series, year: pd.Series, genres: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"title": title.astype(str).to_numpy(), "year": year.astype("Int64").array,
                         "genres": genres.astype(str).to_numpy()})


def _user_frame(age: pd.Series, gender: pd.Series, occupation: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"age": age.astype("Int64").array,
                         "gender": gender.str.strip().astype(str).to_numpy(),
                         "occupation": occupation.str.strip().astype(str).to_numpy()})


def read_native(directory: Path) -> RecData:
    """Read GroupLens' u.data, u.item and u.user (u.item/u.user optional) from `directory`."""
    directory = Path(directory)
    inter = _read(directory / "u.data", "\t", "latin-1", n_cols=4)
    user, item = inter.ids(0, "user id"), inter.ids(1, "item id")
    rating, timestamp = inter.numbers(2, "rating"), inter.numbers(3, "timestamp")
    items = users = None
    if (directory / "u.item").exists():
        t = _read(directory / "u.item", "|", "latin-1", n_cols=5 + len(GENRES))
        flags = t.fields.iloc[:, 5:]
        t.fail(~flags.isin(["0", "1"]).all(axis=1), "genre flags must be 0 or 1")
        title, year = split_title_year(t.fields[1])
        date_year = pd.to_numeric(t.fields[2].str.extract(r"(\d{4})\s*$")[0]).astype("Int64")
        year = year.fillna(date_year)
        genres = join_genres(flags.iloc[:, 1:].to_numpy() == "1")
        items = (t, t.ids(0, "item id"), _item_frame(title, year, genres))
    if (directory / "u.user").exists():
        t = _read(directory / "u.user", "|", "latin-1", n_cols=5)
        users = (t, t.ids(0, "user id"), _user_frame(t.ints(1, "age", nullable=True), t.fields[2], t.fields[3]))
    return _build("movielens_100k", inter, user, item, rating, timestamp, items, users)


def read_atomic(directory: Path, prefix: str = "ml-100k") -> RecData:
    """Read RecBole atomic files `<prefix>.inter|.item|.user` (.item/.user optional)."""
    directory = Path(directory)
    inter = _read(directory / f"{prefix}.inter", "\t", "utf-8", header=True)
    _require(inter, ("user_id", "item_id", "rating", "timestamp"))
    user, item = inter.ids("user_id", "user id"), inter.ids("item_id", "item id")
    rating, timestamp = inter.numbers("rating", "rating"), inter.numbers("timestamp", "timestamp")
    items = users = None
    if (directory / f"{prefix}.item").exists():
        t = _read(directory / f"{prefix}.item", "\t", "utf-8", header=True)
        _require(t, ("item_id", "movie_title", "release_year", "class"))
        title = t.fields["movie_title"].str.strip().replace(_ATOMIC_TYPO, "unknown")
        year_text = t.fields["release_year"].str.strip()
        has_year = year_text.str.fullmatch(r"\d{4}")
        split_title, split_year = split_title_year(title)  # rescues '(1995)' left in a title
        title = title.where(has_year, split_title)
        year = pd.to_numeric(year_text.where(has_year, None)).astype("Int64").fillna(split_year)
        dummies = t.fields["class"].str.strip().str.get_dummies(sep=" ")
        unknown = [c for c in dummies.columns if c not in GENRES and c != ""]
        if unknown:
            t.fail(dummies[unknown[0]] == 1, f"unknown genre {unknown[0]!r} (valid: {', '.join(GENRES)})")
        genres = join_genres(dummies.reindex(columns=list(KNOWN_GENRES), fill_value=0).to_numpy())
        items = (t, t.ids("item_id", "item id"), _item_frame(title, year, genres))
    if (directory / f"{prefix}.user").exists():
        t = _read(directory / f"{prefix}.user", "\t", "utf-8", header=True)
        _require(t, ("user_id", "age", "gender", "occupation"))
        frame = _user_frame(t.ints("age", "age", nullable=True), t.fields["gender"], t.fields["occupation"])
        users = (t, t.ids("user_id", "user id"), frame)
    return _build("movielens_100k", inter, user, item, rating, timestamp, items, users)


def read_movielens(directory: Path, fmt: str) -> RecData:
    """Read ML-100K from `directory` in format "native" or "atomic"."""
    if fmt == "native":
        return read_native(directory)
    if fmt == "atomic":
        return read_atomic(directory)
    raise DataError(f"unknown MovieLens file format {fmt!r} (valid: native, atomic)")
