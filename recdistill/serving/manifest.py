"""manifest.json of an export folder: what the folder holds and how to serve it.

Keys (version 1):
    format, version       "recdistill-export", 1
    role, model           the run's role and the model's config (name, sizes)
    serving               kind (sequence | dot_product), n_users, n_items, max_length (history slots a
                          sequence model reads), dim, fold_in (dot_product: the ridge closed form and
                          its weight), inputs and outputs of each ONNX graph
    history               which splits count as a known user's history (train + valid + test), and
                          what it is used for (sequence input, seen items)
    ties                  the tie rule: seed, and the raw id a new user is hashed as
    files                 every file of the folder with its size in bytes
    check                 the onnxruntime check against the checkpoint (max score difference,
                          identical top-10 lists, users checked)
    source                run folder, checkpoint, cache key, the run's metrics.json `run` block
                          fields (experiment, seed, split key, data fingerprint, git, versions)
    protocol              the run's protocol block (how its metrics were measured)
    versions              packages at export time (torch, onnx, onnxscript, onnxruntime...), git revision
    export_seconds        wall time of the export, check included
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recdistill.errors import ConfigError, DataError
from recdistill.utils.atomic import write_json

FORMAT = "recdistill-export"
VERSION = 1
MANIFEST_FILE = "manifest.json"


def is_export(folder: Path) -> bool:
    """True when `folder` holds an export's manifest."""
    return (Path(folder) / MANIFEST_FILE).exists()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write `manifest` (without format and version, which this adds) into `folder`."""
    write_json(Path(folder) / MANIFEST_FILE, {"format": FORMAT, "version": VERSION, **manifest})


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the export in `folder`; ConfigError when the folder is not an export this code reads."""
    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not an export folder (no {MANIFEST_FILE}); write one with "
                          "`recdistill export RUN_DIR`") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is not valid JSON ({error}); export the run again") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ConfigError(f"{path} is format {manifest.get('format')!r} version {manifest.get('version')!r}; this "
                          f"recdistill reads {FORMAT!r} version {VERSION}: export the run again")
    return manifest
