"""Load recdistill's own files (checkpoints, training state, knowledge, embedding caches) without
unpickling code: every file holds only tensors and plain values, so `torch.load` runs with
`weights_only=True`, and a file that carries a pickled object is refused with a clear error."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from recdistill.errors import DataError


def load_plain(path: str | Path, what: str) -> Any:
    """The contents of `path` (a `torch.save` file of tensors, numbers, strings, lists, tuples and
    dicts), on the CPU. `what` names the file's role for the error message.

    Raises DataError when the file holds any other pickled object (loading it could run code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise DataError(f"{path} ({what}) holds pickled Python objects, not only tensors and plain values; "
                        "recdistill refuses to load it because unpickling can run arbitrary code. Delete the "
                        f"file if recdistill wrote it (it is rebuilt) or ask where it came from. Detail: "
                        f"{str(error).splitlines()[0]}") from None
