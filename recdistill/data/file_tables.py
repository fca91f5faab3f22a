"""Read one data file (CSV, TSV, Parquet or a RecBole atomic file) into a table of its columns,
remembering where each row came from, so that every error names the file and the line.

Text formats (csv, tsv, atomic) are read with every column as text exactly as written: no
stripping, no number parsing, empty cells stay "". UTF-8 is tried first (a byte-order mark is
dropped); a file that is not valid UTF-8 is read as latin-1 with a warning. CSV quotes with '"';
TSV and atomic files have no quoting (a '"' is part of the value). Atomic files have a typed
header (`user_id:token`); the types are checked for form and dropped from the names. Lines that
are empty or hold only spaces are skipped; a line with the wrong number of fields is a DataError.
Line numbers are 1-based and count the header; a row of a Parquet file is named by its 1-based
row number.
"""

from __future__ import annotations

import codecs
import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from recdistill.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FORMATS = ("auto", "csv", "tsv", "parquet", "atomic")  # values of dataset.format
#: File extension -> format, for dataset.format=auto.
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
              ".inter": "atomic", ".item": "atomic", ".user": "atomic"}
SEPARATORS = {"csv": ",", "tsv": "\t", "atomic": "\t"}
_ATOMIC_HEADER = re.compile(r"[^:\s]+:[a-z_]+")
_BLANK_BYTES = (ord(" "), ord("\r"), ord("\n"))  # a line of only these (and no separator) is skipped


def file_format(path: Path, fmt: str, key: str = "dataset.path") -> str:
    """The format of `path`: `fmt` itself, or (auto) the one its extension names; ConfigError naming
    `key` and the valid choices otherwise."""
    if fmt not in FORMATS:
        raise ConfigError(f"dataset.format={fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise ConfigError(f"{key}={str(path)!r}: cannot tell the format from the extension {suffix or '(none)'!r}; "
                          f"set dataset.format to one of {', '.join(FORMATS[1:])} (auto knows "
                          f"{', '.join(EXTENSIONS)})")
    return EXTENSIONS[suffix]


@dataclass
class FileTable:
    """The rows of one file: `frame` has one column per file column (text formats: str as written)."""

    path: Path
    fmt: str
    frame: pd.DataFrame
    encoding: str | None = None  # text formats: "utf-8" or "latin-1"; Parquet: None
    _lines: np.ndarray | None = field(default=None, repr=False)  # (N,) 1-based line of each row, once needed

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def where(self, row: int) -> str:
        """'path:line' of row `row` (0-based) of the frame; Parquet: 'path: row N'."""
        if self.fmt == "parquet":
            return f"{self.path}: row {row + 1}"
        if self._lines is None:
            self._lines = _record_lines(self)
        return f"{self.path}:{int(self._lines[row])}"

    def fail(self, mask: Any, message: str) -> None:
        """DataError at the first row where `mask` is True, if any: '<file>:<line>: <message>'."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            raise DataError(f"{self.where(int(np.argmax(mask)))}: {message}")

    def header(self) -> str:
        """Where the column names are: 'path:line' of the header (Parquet: the path)."""
        if self.fmt == "parquet":
            return str(self.path)
        return f"{self.path}:{_first_line(self.path, self.fmt)}"

    def require(self, name: str, key: str) -> None:
        """DataError when the file has no column `name` (which config `key` names), listing its columns."""
        if name not in self.frame.columns:
            raise DataError(f"{self.header()}: no column {name!r} ({key}={name}); the file's columns: "
                            f"{', '.join(self.columns)}")

    def text(self, name: str, what: str) -> pd.Series:
        """(N,) column `name` as str: text formats as written; Parquet integers and strings as text,
        DataError for other types or missing values."""
        column = self.frame[name]
        if self.fmt != "parquet":
            return column.astype(str)
        if pd.api.types.is_integer_dtype(column.dtype) and not column.isna().any():
            return column.astype("int64").astype(str)
        self.fail(column.isna().to_numpy(), f"{what} is missing")
        if not (pd.api.types.is_string_dtype(column.dtype) or pd.api.types.is_integer_dtype(column.dtype)):
            raise DataError(f"{self.path}: column {name!r} ({what}) is {column.dtype}; ids must be integers or text")
        return column.astype(str)


def read_table(path: Path, fmt: str) -> FileTable:
    """Read `path` in format `fmt` (csv, tsv, parquet, atomic); DataError naming the file (and
    line) when it is missing, empty or malformed."""
    path = Path(path)
    if fmt == "parquet":
        try:
            frame = pq.read_table(path).to_pandas()
        except FileNotFoundError as exc:
            raise DataError(f"{path}: file not found") from exc
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc
        return FileTable(path, fmt, frame.reset_index(drop=True))
    if fmt not in SEPARATORS:
        raise ConfigError(f"dataset.format={fmt!r} is not one of {', '.join(FORMATS[1:])}")
    raw = _read_bytes(path)
    text, encoding = _decode(path, raw)
    return FileTable(path, fmt, _parse_text(path, fmt, text, raw if encoding == "utf-8" else None), encoding)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a folder, expected a file") from exc
    return raw[len(codecs.BOM_UTF8):] if raw.startswith(codecs.BOM_UTF8) else raw


def _decode(path: Path, raw: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8, else latin-1 with a warning naming the first bad line."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        log.warning("%s:%d is not valid UTF-8 (%s); reading the file as latin-1", path, line, exc.reason)
        return raw.decode("latin-1"), "latin-1"


def _header_names(path: Path, fmt: str, text: str) -> tuple[list[str], list[str]]:
    """(names as the file writes them, column names): atomic headers lose their `:type`."""
    first = _first_nonblank(text)
    if first is None:
        raise DataError(f"{path}: file is empty")
    raw = next(csv.reader([first])) if fmt == "csv" else first.split(SEPARATORS[fmt])
    if fmt == "atomic":
        bad = [h for h in raw if not _ATOMIC_HEADER.fullmatch(h)]
        if bad:
            raise DataError(f"{path}:{_first_line(path, fmt)}: atomic header field {bad[0]!r} is not like "
                            f"'user_id:token' (found {first[:80]!r})")
    names = [h.split(":")[0] if fmt == "atomic" else h for h in raw]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path}:{_first_line(path, fmt)}: column {repeated[0]!r} appears twice in the header")
    return raw, names


def _first_nonblank(text: str) -> str | None:
    """The first line of `text` holding more than spaces (without its line end), or None."""
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        line = text[start:] if end < 0 else text[start:end]
        if line.strip(" \r"):
            return line.rstrip("\r")
        if end < 0:
            return None
        start = end + 1
    return None


def _first_line(path: Path, fmt: str) -> int:
    return int(_nonblank_lines(_read_bytes(path), SEPARATORS[fmt])[0])


def _parse_text(path: Path, fmt: str, text: str, utf8: bytes | None) -> pd.DataFrame:
    """Every field of a text file as str, checking the number of fields of every line (`utf8`: the
    file's bytes when they are UTF-8 already)."""
    raw_names, names = _header_names(path, fmt, text)
    invalid: list[tuple[int, str]] = []

    def on_invalid(row: Any) -> str:
        if not row.text.strip(" \r"):  # a line of spaces: blank
            return "skip"
        invalid.append((row.actual_columns, row.text))
        return "skip"

    quoted = fmt == "csv"
    parse = pa_csv.ParseOptions(delimiter=SEPARATORS[fmt], quote_char='"' if quoted else False,
                                newlines_in_values=quoted and '"' in text, invalid_row_handler=on_invalid)
    convert = pa_csv.ConvertOptions(column_types={n: pa.string() for n in raw_names}, strings_can_be_null=False,
                                    quoted_strings_can_be_null=False)
    try:
        source = pa.py_buffer(utf8 if utf8 is not None else text.encode("utf-8"))
        table = pa_csv.read_csv(source, parse_options=parse, convert_options=convert,
                                read_options=pa_csv.ReadOptions(use_threads=True))
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: cannot parse as {fmt} ({exc})") from exc
    if invalid:
        _fail_invalid(path, fmt, text, len(raw_names), invalid)
    return table.rename_columns(names).to_pandas().astype(str)


def _fail_invalid(path: Path, fmt: str, text: str, expected: int, invalid: list[tuple[int, str]]) -> None:
    """DataError at the first line holding a row with the wrong number of fields."""
    firsts = [row.split("\n")[0].rstrip("\r") for _, row in invalid]
    lines = pc.utf8_rtrim(pa.array(text.split("\n")), characters="\r")
    header = int(_nonblank_lines(text.encode("utf-8"), SEPARATORS[fmt])[0])  # 1-based
    hit = np.flatnonzero(pc.is_in(lines, value_set=pa.array(firsts)).to_numpy(zero_copy_only=False))
    hit = hit[hit >= header]  # 0-based indices of lines after the header
    line = int(hit[0]) + 1 if len(hit) else 0
    text_at = lines[line - 1].as_py() if line else firsts[0]
    found = next((n for (n, _), first in zip(invalid, firsts) if first == text_at), invalid[0][0])
    where = f"{path}:{line}" if line else str(path)
    raise DataError(f"{where}: expected {expected} fields separated by {SEPARATORS[fmt]!r}, found {found} "
                    f"({len(invalid)} such lines; line: {text_at[:80]!r})")


def _nonblank_lines(raw: bytes, sep: str) -> np.ndarray:
    """1-based numbers of the lines of `raw` holding anything but spaces and carriage returns."""
    data = np.frombuffer(raw, dtype=np.uint8)
    newline = np.flatnonzero(data == ord("\n"))
    starts = np.concatenate([[0], newline + 1])  # (L,)
    ends = np.append(newline, len(data))  # (L,) exclusive
    solid = np.concatenate([[0], np.cumsum(~np.isin(data, [b for b in _BLANK_BYTES if chr(b) != sep]))])
    return np.flatnonzero(solid[ends] - solid[starts] > 0) + 1


def _record_lines(table: FileTable) -> np.ndarray:
    """(N,) 1-based line where each row of a text file starts (rows after the header, blank lines
    skipped; a quoted value spanning lines moves the later rows down)."""
    raw = _read_bytes(table.path)
    nonblank = _nonblank_lines(raw, SEPARATORS[table.fmt])
    n = len(table.frame)
    spans = np.zeros(n, dtype=np.int64)
    if table.fmt == "csv" and n:
        text_columns = [table.frame[c].astype(str) for c in table.frame.columns]
        spans = sum(c.str.count("\n").to_numpy(dtype=np.int64) for c in text_columns)
    if not spans.any():
        return nonblank[1:n + 1]
    # a value holding newlines: count lines from the header (exact when no blank line lies between rows)
    return nonblank[0] + 1 + np.arange(n) + np.concatenate([[0], np.cumsum(spans)[:-1]])
