"""Write files so that a reader never sees half of one: write a temporary sibling, then rename.

A write that the file system refuses (disk full, read-only, no permission, quota) raises
`StorageError` naming the file; the temporary sibling is removed and the previous version of the
file, if any, stays as it was.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from recdistill.errors import StorageError

#: File-system refusals reported as a StorageError (anything else propagates unchanged).
STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.ENOENT,
                  errno.ENOTDIR)


def _refused(path: Path, error: OSError) -> StorageError:
    name = errno.errorcode.get(error.errno, str(error.errno))
    return StorageError(f"could not write {path}: {error.strerror or error} ({name}); nothing was half-written and "
                        "its previous version, if any, is unchanged. Free space or make the folder writable (or "
                        "point hydra.run.dir / cache_dir elsewhere), then run the same command again: finished "
                        "work is reused")


def _umask() -> int:
    """The process's file-creation mask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` in one rename.

    Raises StorageError when the file system refuses the write (see STORAGE_ERRNOS)."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets the mode open() would give it
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        if error.errno in STORAGE_ERRNOS:
            raise _refused(path, error) from None
        raise
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write pretty JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """Atomically write a CSV without the index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    """Atomically write a parquet file without the index."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def torch_save(path: str | Path, obj: Any) -> None:
    """Atomically `torch.save` an object."""
    import torch  # imported here so that result files can be written without loading torch

    buffer = io.BytesIO()  # serialised in memory, so a refused write is an OSError, not torch's RuntimeError
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
