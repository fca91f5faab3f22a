"""Load a dataset and make its split once: splits are cached under a key of the dataset and split
configs, the seed and the data's content fingerprint, and the run folder records which split it used."""

from __future__ import annotations

import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from recdistill.data.given_split import load_given
from recdistill.data.loading import load_dataset
from recdistill.data.report import describe
from recdistill.data.split_config import to_split_config
from recdistill.data.splits import Split, load_split, make_split, save_split, split_key
from recdistill.data.tables import RecData
from recdistill.utils.atomic import write_json

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    """A config node or dataclass as a plain dict."""
    if is_dataclass(node):
        return asdict(node)
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def load_or_make_split(dataset_cfg: Any, split_cfg: Any, seed: int, cache_dir: Path, run_dir: Path
                       ) -> tuple[RecData, Split, str]:
    """(data, split, split key): the dataset, and its split made or reused from
    `<cache_dir>/splits/<key>/`; writes `data_report.json` (`recdistill.data.report`) and
    `split.json` (key, path, data fingerprint, settings, sizes) into `run_dir`.
    split=given reads its data from its three files, and its split.json holds what they held ("given")."""
    typed_split = to_split_config(split_cfg)
    if typed_split.name == "given":  # the data is the union of the three files, each row knowing its part
        data, part = load_given(dataset_cfg, typed_split)
        interactions = data.interactions.assign(part=part)
    else:
        data = load_dataset(dataset_cfg, seed=seed)
        interactions = data.interactions
    key = split_key(dataset_cfg, split_cfg, seed, data.fingerprint)  # takes config nodes, dataclasses or mappings
    split_dir = cache_dir / "splits" / key
    if (split_dir / "split.json").exists():  # written last by save_split: the entry is complete
        split = load_split(split_dir)
    else:
        split = make_split(interactions, split_cfg, seed, items=data.items)
        save_split(split, split_dir)
    write_json(run_dir / "data_report.json", describe(data))
    write_json(run_dir / "split.json", {"key": key, "path": str(split_dir), "data_fingerprint": data.fingerprint,
                                        **_plain(split_cfg), "sizes": split.sizes(),
                                        **({"given": data.report["given_split"]} if "given_split" in data.report
                                           else {})})
    log.info("data %s: %d users, %d items; split %s %s -> train %d, valid %d, test %d", data.name, data.n_users,
             data.n_items, split_cfg.name, key, len(split.train), len(split.valid), len(split.test))
    return data, split, key
