"""CiteULike-t as the Topology Distillation study (KDD 2021) split it: 5,219 users, 25,181 articles,
implicit bookmarks without timestamps; train, valid (one item per user) and test (one item per user).

    dataset=citeulike_t split=given        (what +experiment=citeulike_rank_kd sets)
    recdistill data fetch citeulike-t [source=local local_dir=DIR] [cache_dir=DIR]

The three files train.tsv, valid.tsv, test.tsv live in `dataset.folder` (`<cache_dir>/citeulike-t`
by default), put there by `fetch` (`recdistill.data.fetch_citeulike_t`). The Config extends
dataset=files' Config, so split=given reads them with its column mapping (and takes them from
dataset.folder when split.train / valid / test are unset); `read` returns their union (what `data
info` shows). Every read checks the files against the published SHA-256 first (remembered, so once
per file); nothing is downloaded while reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from recdistill.data.fetch_citeulike_t import (ALREADY, CHECKSUMS, FOLDER_NAME, PARTS, SOURCES,
                                               check_checksums, fetch_citeulike_t, verify_files)
from recdistill.data.file_data import FileColumns
from recdistill.data.file_tables import FORMATS
from recdistill.data.readers.base import DatasetReader
from recdistill.data.readers.files import Files, read_files
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError
from recdistill.utils.config_checks import bounded
from recdistill.utils.fingerprint import sha256_of


# (user, item) rows of the fixture's three files: item 3 is only in test, item 2 only in valid
FIXTURE_ROWS = {"train": ((0, 0), (0, 1), (1, 1), (2, 0), (2, 1)), "valid": ((0, 2), (1, 0), (2, 2)),
                "test": ((0, 3), (1, 2), (2, 3))}


def _published() -> Dict[str, str]:
    return dict(CHECKSUMS)


class CiteULikeT(DatasetReader):
    """The study's CiteULike-t split, verified against its published checksums."""

    aliases = ("citeulike-t",)

    @dataclass
    class Config(Files.Config):
        """Where the three files are and what they must hash to; dataset=files' options read them."""

        name: str = "citeulike_t"
        folder: Optional[str] = None  # holds train.tsv, valid.tsv, test.tsv; null: <cache_dir>/citeulike-t
        format: str = bounded("tsv", choices=FORMATS)  # the published files are tab-separated with a header
        columns: FileColumns = field(default_factory=lambda: FileColumns(user="user_id", item="item_id"))
        # expected SHA-256 of each part: the published ones (change only for a copy you altered on purpose)
        sha256: Dict[str, str] = field(default_factory=_published)
        # for `data fetch`: auto (local_dir when given, else the study's pickles on GitHub) | github | local
        source: str = bounded("auto", choices=SOURCES)
        local_dir: Optional[str] = None  # for `data fetch`: a folder with the three verified TSVs

        def __post_init__(self) -> None:
            if self.folder is None:  # the YAML says ${cache_dir}/citeulike-t; `data fetch` gives only cache_dir
                self.folder = str(Path(self.cache_dir) / FOLDER_NAME)

    def data_key(self, options: dict[str, Any], seed: int) -> dict[str, Any]:
        """Where the files are and where they came from do not determine the data: the fingerprint (of
        the verified content) does."""
        return {k: v for k, v in options.items() if k not in ("cache_dir", "folder", "source", "local_dir", "sha256")}

    def read(self, cfg: Config, seed: int) -> RecData:
        """The union of train.tsv, valid.tsv and test.tsv in dataset.folder, verified first."""
        if cfg.path is not None:
            raise ConfigError(f"dataset.path={cfg.path!r} is set, but dataset=citeulike_t reads dataset.folder "
                              f"({cfg.folder}); remove dataset.path")
        paths = part_paths(cfg)
        self.check_given(cfg, paths)
        data = read_files(cfg, [(paths[part], cfg.format) for part in PARTS])
        return replace(data, name=cfg.name)

    def check_given(self, cfg: Config, paths: Mapping[str, Path]) -> None:
        """Verify the three files (by part) against dataset.sha256 before split=given or `read` reads them."""
        verify_files(paths, check_checksums(cfg.sha256), cfg.cache_dir, Path(str(cfg.folder)).expanduser())

    def fetch(self, cfg: Config) -> str:
        """Copy (source=local) or download and convert the files into dataset.folder, verified."""
        local_dir = Path(cfg.local_dir).expanduser() if cfg.local_dir else None
        folder, origin = fetch_citeulike_t(Path(str(cfg.folder)), cfg.source, local_dir, checksums=cfg.sha256,
                                           memo_dir=cfg.cache_dir)
        return (f"citeulike-t (train.tsv, valid.tsv, test.tsv) verified in {folder} "
                f"({origin if origin == ALREADY else 'from ' + origin})")

    def fixtures(self, directory: Path) -> dict[str, Config]:
        """Three tiny files in the published layout, with their own checksums."""
        folder = Path(directory) / FOLDER_NAME
        folder.mkdir(parents=True, exist_ok=True)
        for part, rows in FIXTURE_ROWS.items():
            (folder / f"{part}.tsv").write_text("user_id\titem_id\n" + "".join(f"{u}\t{i}\n" for u, i in rows),
                                                encoding="utf-8")
        sums = {part: sha256_of(folder / f"{part}.tsv") for part in PARTS}
        return {"tsv": self.Config(folder=str(folder), cache_dir=str(Path(directory) / "cache"), sha256=sums)}


def part_paths(cfg: Any) -> dict[str, Path]:
    """{part: <dataset.folder>/<part>.tsv}."""
    return {part: Path(str(cfg.folder)).expanduser() / f"{part}.tsv" for part in PARTS}
