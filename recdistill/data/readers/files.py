"""Your own data: interactions in CSV, TSV, Parquet or RecBole atomic files, with a column mapping.

    dataset=files dataset.path=FILE_OR_FOLDER dataset.columns.user=NAME dataset.columns.item=NAME
        [dataset.columns.rating=NAME] [dataset.columns.timestamp=NAME] [dataset.format=csv|tsv|parquet|atomic]
        [dataset.columns.item_side=[title,genre]] [dataset.items=FILE] [dataset.users=FILE]

A folder holds either one atomic `.inter` file or files of one format (read in name order as one
table). An atomic `x.inter` brings `x.item` / `x.user` next to it as side tables unless
dataset.items / dataset.users name others. What the files hold is parsed by
`recdistill.data.file_tables` (text, encodings, line numbers) and `recdistill.data.file_data`
(ids, ratings, times, side tables). The fingerprint is over every file read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from recdistill.data.config import DatasetConfig
from recdistill.data.file_data import FileColumns, build_recdata
from recdistill.data.file_tables import EXTENSIONS, FORMATS, FileTable, file_format, read_table
from recdistill.data.rating_scale import parse_rating_scale
from recdistill.data.readers.base import DatasetReader
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError
from recdistill.utils.config_checks import bounded
from recdistill.utils.fingerprint import files_fingerprint

log = logging.getLogger(__name__)


class Files(DatasetReader):
    """Interactions (and side tables) from the user's own files."""

    @dataclass
    class Config(DatasetConfig):
        """Where the files are, their format and which column holds what."""

        name: str = "files"
        path: Optional[str] = None  # the interactions file or folder (unset with split=given, which names the files)
        format: str = bounded("auto", choices=FORMATS)  # auto: from each file's extension
        columns: FileColumns = field(default_factory=FileColumns)  # which column holds what
        items: Optional[str] = None  # an item table file, keyed by columns.item
        users: Optional[str] = None  # a user table file, keyed by columns.user
        min_user_interactions: int = bounded(0, ge=0)  # your data as it is: no user dropped

    def read(self, cfg: Config, seed: int) -> RecData:
        """The interactions of dataset.path with their side tables."""
        if cfg.path is None:
            raise ConfigError("dataset=files needs dataset.path=FILE_OR_FOLDER (the interactions), or "
                              "split=given with split.train / split.valid / split.test")
        sources = interaction_files(Path(cfg.path).expanduser(), cfg.format)
        return read_files(cfg, sources)

    def fixtures(self, directory: Path) -> dict[str, Config]:
        """One tiny dataset per format: CSV with side columns, TSV implicit feedback, Parquet
        half stars, atomic files with an .item table."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ratings.csv").write_text(
            "user,item,stars,when,title,genre\n10,5,4,881250949,\"Café Chérie, Part 2\",Drama\n"
            "1,1,5,874965758,Toy Story,Animation\n2,12,1,888550871,Heat,Action\n1,5,3,876893171,"
            "\"Café Chérie, Part 2\",Drama\n", encoding="utf-8")
        (directory / "clicks.tsv").write_text("user_id\titem_id\nu-a\t005\nu-b\t5\nu-a\t5\n", encoding="utf-8")
        pd.DataFrame({"user_id": [3, 1, 3, 2], "item_id": ["b", "a", "a", "c"], "rating": [3.5, 0.5, 5.0, 4.5],
                      "time": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"], utc=True)}
                     ).to_parquet(directory / "stars.parquet", index=False)
        atomic = directory / "atomic"
        atomic.mkdir(exist_ok=True)
        (atomic / "shop.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n7\t2\t100\n7\t3\t101\n"
                                           "8\t2\t102\n", encoding="utf-8")
        (atomic / "shop.item").write_text("item_id:token\ttitle:token_seq\n2\tmug\n3\tkettle\n4\tteapot\n",
                                          encoding="utf-8")
        cache = str(directory / "cache")
        return {
            "csv": self.Config(path=str(directory / "ratings.csv"), cache_dir=cache, columns=FileColumns(
                user="user", item="item", rating="stars", timestamp="when", item_side=["title", "genre"])),
            "tsv": self.Config(path=str(directory / "clicks.tsv"), cache_dir=cache),
            "parquet": self.Config(path=str(directory / "stars.parquet"), cache_dir=cache, rating_scale=[0.5, 5, 0.5],
                                   columns=FileColumns(rating="rating", timestamp="time")),
            "atomic": self.Config(path=str(atomic), format="atomic", cache_dir=cache,
                                  columns=FileColumns(timestamp="timestamp")),
        }


def interaction_files(path: Path, fmt: str) -> list[tuple[Path, str]]:
    """(file, format) of each interactions file `path` names: the file itself, or a folder's one
    atomic `.inter` file or its files of one format in name order; ConfigError when unclear."""
    if not path.exists():
        raise ConfigError(f"dataset.path={str(path)!r}: no such file or folder")
    if path.is_file():
        return [(path, file_format(path, fmt))]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    inter = [p for p in files if p.suffix.lower() == ".inter"]
    if fmt in ("auto", "atomic") and (inter or fmt == "atomic"):
        if len(inter) != 1:
            raise ConfigError(f"dataset.path={str(path)!r} holds {len(inter)} atomic .inter files "
                              f"({', '.join(p.name for p in inter) or 'none'}); name one file in dataset.path")
        return [(inter[0], "atomic")]
    kinds = {p: EXTENSIONS.get(p.suffix.lower()) for p in files}
    wanted = {k for k in kinds.values() if k and k != "atomic"} if fmt == "auto" else {fmt}
    if len(wanted) != 1:
        raise ConfigError(f"dataset.path={str(path)!r}: found {', '.join(sorted(wanted)) or 'no'} data files "
                          f"({', '.join(EXTENSIONS)}); set dataset.format or name one file in dataset.path")
    chosen = [p for p, k in kinds.items() if k in wanted]
    if not chosen:
        raise ConfigError(f"dataset.path={str(path)!r} holds no {fmt} file ({', '.join(EXTENSIONS)})")
    kind = wanted.pop()
    return [(p, kind) for p in chosen]


def read_files(cfg: Any, sources: Sequence[tuple[Path, str]]) -> RecData:
    """The RecData of the interactions files `sources` (ids numbered over all of them) with the
    side tables `cfg` (a files Config) names, fingerprinted over every file read."""
    tables = [read_table(path, fmt) for path, fmt in sources]
    log.info("Read %s: %s rows", ", ".join(str(p) for p, _ in sources), ", ".join(str(len(t)) for t in tables))
    side: dict[str, FileTable | None] = {}
    for what in ("items", "users"):
        side_path = _side_path(cfg, what, sources)
        side[what] = read_table(side_path, file_format(side_path, cfg.format, f"dataset.{what}")) if side_path else None
    data = build_recdata("files", tables, cfg.columns, parse_rating_scale(cfg.rating_scale),
                         items=side["items"], users=side["users"])
    read = [path for path, _ in sources] + [t.path for t in side.values() if t is not None]
    return replace(data, fingerprint=files_fingerprint(read, cfg.cache_dir))


def _side_path(cfg: Any, what: str, sources: Sequence[tuple[Path, str]]) -> Path | None:
    """dataset.items / dataset.users, else the `.item` / `.user` sibling of a single atomic `.inter` file."""
    configured = getattr(cfg, what)
    if configured is not None:
        return Path(configured).expanduser()
    if len(sources) == 1 and sources[0][1] == "atomic":
        sibling = sources[0][0].with_suffix("." + what[:-1])
        if sibling.is_file():
            log.info("Reading the %s table %s (next to %s)", what[:-1], sibling, sources[0][0].name)
            return sibling
    return None
