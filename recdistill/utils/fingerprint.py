"""Content fingerprints of input files, so cache keys follow the data and not where it lives.

A file's fingerprint is the sha256 of its bytes. Hashing a large file on every run would cost
seconds, so the digest is remembered under `<cache_dir>/fingerprints/`, keyed by the file's
(resolved path, size, mtime_ns, inode): an unchanged file is not read again, an edited one is.
Limit: an edit that keeps the size and restores both the modification time and the inode (a
deliberate `touch -d` after an in-place same-size rewrite) is not noticed; pass `refresh=True`
(or delete the folder) to re-hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

from recdistill.utils.atomic import write_json

_CHUNK = 1 << 20


def _stat_key(path: Path) -> str:
    stat = path.stat()
    identity = [str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino]
    return hashlib.sha256(json.dumps(identity).encode("utf-8")).hexdigest()[:32]


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: str | Path, cache_dir: str | Path | None = None, refresh: bool = False) -> str:
    """Hex sha256 of the file at `path`, remembered under `<cache_dir>/fingerprints/` by (path,
    size, mtime_ns, inode) when `cache_dir` is given. Raises FileNotFoundError when it is missing."""
    path = Path(path).expanduser().resolve()
    if cache_dir is None:
        return sha256_of(path)
    memo = Path(cache_dir).expanduser() / "fingerprints" / f"{_stat_key(path)}.json"
    if not refresh and memo.exists():
        try:
            return str(json.loads(memo.read_text(encoding="utf-8"))["sha256"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged memo is rewritten below
    digest = sha256_of(path)
    try:
        write_json(memo, {"path": str(path), "sha256": digest})
    except OSError:  # a read-only cache only costs a re-hash next time
        pass
    return digest


def files_fingerprint(paths: Iterable[str | Path], cache_dir: str | Path | None = None) -> str:
    """One hex sha256 over several files' digests, in the order given (names do not enter: the
    same bytes at another path give the same fingerprint)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(file_fingerprint(path, cache_dir).encode("ascii"))
    return digest.hexdigest()


def fingerprint_of_texts(*parts: str) -> str:
    """Hex sha256 of strings (a named dataset's verified checksums, for instance)."""
    return hashlib.sha256(os.linesep.join(parts).encode("utf-8")).hexdigest()
