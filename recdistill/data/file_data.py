"""Turn the tables of a user's files (`recdistill.data.file_tables`) into one RecData, with a
column mapping (`FileColumns`): the reader `dataset=files` and the split `split=given` use it.

Ids are text exactly as written ("005" and "5" are two ids). Internal ids follow numeric order when
every id is a canonical integer (no sign, space or leading zero: MovieLens' ids keep their order),
text order otherwise, numbered over all the interaction files together. Ratings must lie on the
rating scale (configured, else inferred); timestamps are Unix seconds (fractions floored) or ISO
8601 dates. Side columns of the interactions file become the items / users tables, one value per
id; side files are keyed by the same id column. Every error names the file and line.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

import numpy as np
import pandas as pd

from recdistill.data.file_tables import FileTable
from recdistill.data.rating_scale import RatingScale, check_on_scale, infer_rating_scale
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_CANONICAL_INT = r"0|[1-9][0-9]*"


@dataclass
class FileColumns:
    """Which column of the files holds what (`dataset.columns.*`)."""

    user: str = "user_id"  # the user id column (ids are text, exactly as written)
    item: str = "item_id"  # the item id column
    rating: Optional[str] = None  # the explicit rating column; null: implicit feedback
    timestamp: Optional[str] = None  # Unix seconds or ISO 8601 dates; null: no time (file order stands in)
    item_side: List[str] = field(default_factory=list)  # interaction-file columns describing the item -> items table
    user_side: List[str] = field(default_factory=list)  # interaction-file columns describing the user -> users table


class _Rows:
    """Rows of several tables, concatenated: names the file and line of a row of the whole."""

    def __init__(self, tables: Sequence[FileTable]) -> None:
        self.tables = list(tables)
        self.ends = np.cumsum([len(t) for t in self.tables])  # (T,)

    def where(self, row: int) -> str:
        """'file:line' of row `row` of the concatenation."""
        k = int(np.searchsorted(self.ends, row, side="right"))
        return self.tables[k].where(row - int(self.ends[k] - len(self.tables[k])))

    def fail(self, mask: Any, message: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            raise DataError(f"{self.where(int(np.argmax(mask)))}: {message}")

    def column(self, name: str, key: str) -> pd.Series:
        """(N,) column `name` of every table (as each file holds it)."""
        for table in self.tables:
            table.require(name, key)
        return pd.concat([t.frame[name] for t in self.tables], ignore_index=True)

    def text(self, name: str, key: str, what: str) -> pd.Series:
        for table in self.tables:
            table.require(name, key)
        return pd.concat([t.text(name, what) for t in self.tables], ignore_index=True)


def dense_ids(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """((N,) int64 internal id of each raw id, (K,) str raw id of each internal id): numeric order
    when every id is a canonical integer, text (code point) order otherwise."""
    codes, uniques = pd.factorize(raw.to_numpy(dtype=object))
    uniques = np.asarray(uniques, dtype=str)
    if pd.Series(uniques, dtype=object).str.fullmatch(_CANONICAL_INT).all():
        order = np.lexsort((uniques, np.char.str_len(uniques)))  # same length: text order is numeric order
    else:
        order = np.argsort(uniques, kind="stable")
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[order] = np.arange(len(uniques))
    return rank[codes], uniques[order]


def _numbers(values: pd.Series) -> np.ndarray:
    """(N,) float64; NaN where a value is not a number (text formats) or missing."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(values.astype(str).str.strip(), errors="coerce").to_numpy(dtype=np.float64,
                                                                                   na_value=np.nan)


def parse_ratings(rows: _Rows, name: str) -> np.ndarray:
    """(N,) float64 ratings of column `name`; DataError naming the first unparsable one."""
    values = rows.column(name, "dataset.columns.rating")
    ratings = _numbers(values)
    bad = ~np.isfinite(ratings)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{rows.where(row)}: rating {str(values.iloc[row])!r} (column {name!r}) is not a number "
                        f"({int(bad.sum())} such rows)")
    return ratings


_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z: larger "seconds" are milli- or nanoseconds


def parse_timestamps(rows: _Rows, name: str) -> np.ndarray:
    """(N,) int64 Unix seconds of column `name`: numbers (floored) or ISO 8601 dates; DataError
    naming the first value that is neither."""
    values = rows.column(name, "dataset.columns.timestamp")
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = pd.to_datetime(values, utc=True)
        seconds = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        numbers = seconds.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        numbers = _numbers(values).copy()
        dates = ~np.isfinite(numbers)
        if dates.any():  # not numbers: ISO 8601 dates?
            text = values[dates].astype(str).str.strip()
            stamps = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
            seconds = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
            numbers[dates] = seconds.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numbers)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{rows.where(row)}: timestamp {str(values.iloc[row])!r} (column {name!r}) is neither "
                        f"Unix seconds nor an ISO 8601 date ({int(bad.sum())} such rows)")
    beyond = np.abs(numbers) > _LAST_SECOND
    if beyond.any():
        row = int(np.argmax(beyond))
        raise DataError(f"{rows.where(row)}: timestamp {str(values.iloc[row])!r} (column {name!r}) is beyond the "
                        f"year 9999 as Unix seconds ({int(beyond.sum())} such rows); milliseconds or nanoseconds? "
                        "Convert the column to seconds (or ISO 8601 dates)")
    if len(numbers) and (numbers == np.floor(numbers)).all() and 19000101 <= numbers.min() <= numbers.max() <= 21001231:
        log.warning("%s: every timestamp lies in 19000101..21001231: if they are YYYYMMDD dates, they are being read "
                    "as seconds after 1970 (all in August 1970); write them as ISO dates (2020-01-01)",
                    rows.where(0).rsplit(":", 1)[0])
    return np.floor(numbers).astype(np.int64)


def suspicious_times(seconds: np.ndarray, source: str) -> dict[str, int] | None:
    """Counts of negative and future timestamps (a warning when any), or None."""
    negative, future = int((seconds < 0).sum()), int((seconds > time.time()).sum())
    if not (negative or future):
        return None
    log.warning("%s: %d negative and %d future timestamps (before 1970 / after now): check the time column",
                source, negative, future)
    return {"negative_timestamps": negative, "future_timestamps": future}


def checked_scale(rows: _Rows, ratings: np.ndarray, configured: RatingScale | None) -> RatingScale:
    """The rating scale (`configured`, else inferred), with every rating on it; DataError naming
    the file and line of the first rating off it."""
    scale = configured
    if scale is None:
        try:
            scale = infer_rating_scale(ratings, str(rows.tables[0].path))
        except DataError:  # neither whole numbers nor halves: name the first rating between halves
            low, high = math.floor(float(ratings.min())), math.ceil(float(ratings.max()))
            check_on_scale(ratings, RatingScale(low, max(high, low + 1), 0.5), rows.where)
            raise
    check_on_scale(ratings, scale, rows.where)
    return scale


def side_from_interactions(rows: _Rows, codes: np.ndarray, raw_ids: np.ndarray, names: Sequence[str], what: str
                           ) -> pd.DataFrame:
    """(K, len(names)) one value per id of each side column; DataError at the first row giving an
    id a value other than the one its first row gave."""
    first_rows = np.unique(codes, return_index=True)[1]  # (K,) first row of each internal id
    table = {}
    for name in names:
        values = rows.column(name, f"dataset.columns.{what}_side")
        as_text = values.astype(str).to_numpy(dtype=object)
        first = first_rows[codes]  # (N,) first row of each row's id
        conflict = as_text != as_text[first]
        if conflict.any():
            row = int(np.argmax(conflict))
            raise DataError(f"{rows.where(row)}: {what} {str(raw_ids[codes[row]])!r} has {name}="
                            f"{str(values.iloc[row])!r} here but {name}={str(values.iloc[first[row]])!r} at "
                            f"{rows.where(int(first[row]))}; {'an' if what == 'item' else 'a'} {what} column must "
                            f"hold one value per {what}")
        table[name] = values.iloc[first_rows].reset_index(drop=True)
    return pd.DataFrame(table)


def side_from_file(side: FileTable, id_column: str, raw_ids: np.ndarray, what: str) -> tuple[pd.DataFrame, int]:
    """(K, C) the side file's other columns for each internal id ("" or <NA> where it has no row),
    and how many of its ids have no interactions; DataError at a repeated id."""
    side.require(id_column, f"dataset.columns.{what}")
    ids = side.text(id_column, f"{what} id")
    repeated = ids.duplicated().to_numpy()
    if repeated.any():
        row = int(np.argmax(repeated))
        earlier = int(np.argmax((ids == ids.iloc[row]).to_numpy()))
        raise DataError(f"{side.where(row)}: {what} id {ids.iloc[row]!r} appears again (first at "
                        f"{side.where(earlier)}); a {what} table holds one row per {what}")
    frame = side.frame.drop(columns=[id_column]).set_axis(pd.Index(ids.to_numpy(dtype=object)), axis=0)
    aligned = frame.reindex(pd.Index(raw_ids, dtype=object)).reset_index(drop=True)
    if side.fmt != "parquet":
        aligned = aligned.fillna("").astype(str)
    unused = int((~pd.Index(ids.to_numpy(dtype=object)).isin(raw_ids)).sum())
    if unused:
        log.info("%s: %d %ss have no interactions and are left out", side.path, unused, what)
    return aligned, unused


def _side_table(from_rows: pd.DataFrame | None, from_file: pd.DataFrame | None, what: str, path: Any
                ) -> pd.DataFrame | None:
    """The items or users table (index: internal id) from interaction columns and/or a side file."""
    if from_rows is None and from_file is None:
        return None
    if from_rows is not None and from_file is not None:
        both = sorted(set(from_rows.columns) & set(from_file.columns))
        if both:
            raise ConfigError(f"column {both[0]!r} is both in dataset.columns.{what}_side and in the {what} table "
                              f"{path}; keep it in one place")
    parts = [t for t in (from_file, from_rows) if t is not None]
    return pd.concat(parts, axis=1).rename_axis(what)


def build_recdata(name: str, tables: Sequence[FileTable], columns: FileColumns, scale: RatingScale | None,
                  items: FileTable | None = None, users: FileTable | None = None) -> RecData:
    """One RecData of the interactions in `tables` (in order: ids numbered over all of them), with
    items / users tables from the mapped side columns and side files."""
    rows = _Rows(tables)
    mapped = {key: value for key, value in (("user", columns.user), ("item", columns.item),
                                            ("rating", columns.rating), ("timestamp", columns.timestamp)) if value}
    shared = {value for value in mapped.values() if list(mapped.values()).count(value) > 1}
    if shared:
        keys = [f"dataset.columns.{key}" for key, value in mapped.items() if value in shared]
        raise ConfigError(f"{' and '.join(keys)} name the same column {sorted(shared)[0]!r}; each must name its own")
    if sum(len(t) for t in tables) == 0:
        raise DataError(f"{', '.join(str(t.path) for t in tables)}: no interactions (only a header)")
    user_raw = rows.text(columns.user, "dataset.columns.user", "user id")
    item_raw = rows.text(columns.item, "dataset.columns.item", "item id")
    for what, raw in (("user", user_raw), ("item", item_raw)):
        rows.fail((raw == "").to_numpy(), f"{what} id is empty")
    user, user_ids = dense_ids(user_raw)
    item, item_ids = dense_ids(item_raw)
    interactions = pd.DataFrame({"user": user, "item": item})
    report: dict[str, Any] = {"files": [str(t.path) for t in (*tables, *(s for s in (items, users) if s))],
                              "interaction_rows": [len(t) for t in tables]}
    encodings = {str(t.path): t.encoding for t in (*tables, *(s for s in (items, users) if s)) if t.encoding}
    if encodings:
        distinct = set(encodings.values())
        report["encoding"] = distinct.pop() if len(distinct) == 1 else encodings
    if columns.rating is not None:
        ratings = parse_ratings(rows, columns.rating)
        scale = checked_scale(rows, ratings, scale)
        interactions["rating"] = ratings.astype(np.float32)
    else:
        scale = None
    if columns.timestamp is not None:
        interactions["timestamp"] = parse_timestamps(rows, columns.timestamp)
        suspicious = suspicious_times(interactions["timestamp"].to_numpy(), ", ".join(map(str, report["files"])))
        if suspicious:
            report["suspicious"] = suspicious
    side: dict[str, pd.DataFrame | None] = {}
    for what, codes, raw_ids, names, side_file in (("item", item, item_ids, columns.item_side, items),
                                                   ("user", user, user_ids, columns.user_side, users)):
        from_rows = side_from_interactions(rows, codes, raw_ids, names, what) if names else None
        from_file = None
        if side_file is not None:
            from_file, unused = side_from_file(side_file, getattr(columns, what), raw_ids, what)
            report[f"{what}s_without_interactions"] = unused
        side[what] = _side_table(from_rows, from_file, what, side_file.path if side_file else None)
    return RecData(name=name, interactions=interactions, items=side["item"], users=side["user"],
                   user_ids=user_ids, item_ids=item_ids, report=report, rating_scale=scale)
