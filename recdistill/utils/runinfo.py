"""What makes a run reproducible: package versions, git revision, devices, stable hashes of configs."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from recdistill.errors import ConfigError

#: The `device` values recdistill accepts, as messages list them.
DEVICE_FORMS = "auto (CUDA when available, else CPU), cpu, cuda, cuda:N (N = GPU index), mps"
_DEVICE = re.compile(r"auto|cpu|cuda(:(?P<index>\d+))?|mps")
_FALLBACK = "use device=auto (CUDA when available, else CPU) or device=cpu"

PACKAGES = ("recdistill", "torch", "hydra-core", "omegaconf", "numpy", "pandas", "pyarrow",
            "sentence-transformers", "rich")


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the packages a result depends on, plus `extra` ones (and Python);
    "not installed" for a missing one."""
    versions = {"python": platform.python_version()}
    for name in (*PACKAGES, *extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_revision() -> dict[str, Any]:
    """Commit of the source tree recdistill runs from, and whether it has uncommitted changes."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown (not a git checkout)", "dirty": None}


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The torch device of `device=name`: `auto` is CUDA when available, else CPU.

    `local_rank` (a process of several that torchrun started on this machine): `auto` and `cuda` are
    the GPU of that index, cuda:N is refused (every process would take the same GPU).
    Anything but auto, cpu, cuda, cuda:N and mps, or a device this machine lacks, is a ConfigError
    that says so and names the way out."""
    match = _DEVICE.fullmatch(str(name))
    if match is None:
        raise ConfigError(f"device={name!r} must be one of {DEVICE_FORMS}")
    if local_rank is not None and (name == "cuda" or (name == "auto" and torch.cuda.is_available())):
        return _local_gpu(local_rank)
    if local_rank is not None and match["index"] is not None:
        raise ConfigError(f"device={name!r} under torchrun would put every process on one GPU; use device=auto or "
                          "device=cuda (each process takes the GPU of its LOCAL_RANK) or device=cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "" if torch.version.cuda else ", a build without CUDA"
            raise ConfigError(f"device={name!r} but CUDA is not available on this machine "
                              f"(torch {torch.__version__}{build}); {_FALLBACK}")
        count = torch.cuda.device_count()
        if match["index"] is not None and int(match["index"]) >= count:
            present = "cuda:0" if count == 1 else f"cuda:0..cuda:{count - 1}"
            raise ConfigError(f"device={name!r} but this machine has {count} CUDA device(s), {present}; "
                              "use device=cuda, device=auto or device=cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device='mps' but MPS (Apple GPU) is not available on this machine; {_FALLBACK}")
    return torch.device(name)


def _local_gpu(local_rank: int) -> torch.device:
    """cuda:`local_rank`, for a process that torchrun started; ConfigError when there is no such GPU."""
    if not torch.cuda.is_available():
        build = "" if torch.version.cuda else ", a build without CUDA"
        raise ConfigError(f"device='cuda' but CUDA is not available on this machine (torch {torch.__version__}"
                          f"{build}); {_FALLBACK}")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(f"torchrun started local rank {local_rank}, but this machine has {count} CUDA device(s): "
                          f"start at most {count} processes per machine (--nproc_per_node={count}) or use device=cpu")
    return torch.device(f"cuda:{local_rank}")


#: Top-level config keys that never change a run's results: they are no part of its identity (its
#: folder's key, whether a finished run is skipped); `resume` names where it runs, `logger` where it reports.
NON_IDENTITY_KEYS = ("resume", "logger")


def run_identity(config: dict) -> dict:
    """The resolved config `config` without the keys that do not change a run's results."""
    return {k: v for k, v in config.items() if k not in NON_IDENTITY_KEYS}


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of `obj` (sorted keys), for cache keys."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
