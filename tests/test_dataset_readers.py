"""Dataset reader contract, discovered from the registry: every reader reads its own fixture into a
valid RecData; a module dropped into the readers package is found; names and keys are checked."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import recdistill.data.readers as readers_package
from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.data.loading import load_dataset
from recdistill.data.report import describe
from recdistill.data.readers.registry import (dataset_config, dataset_readers, get_reader, names_and_aliases,
                                              resolve_alias)
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError, DataError

READERS = sorted(dataset_readers())


def assert_valid(data: RecData) -> None:
    """The RecData contract, spelt out (RecData.check enforces the same)."""
    data.check()
    inter = data.interactions
    assert {"user", "item"} <= set(inter.columns) <= {"user", "item", "rating", "timestamp"}
    assert inter["user"].dtype == np.int64 and inter["item"].dtype == np.int64
    if data.has_rating:
        assert inter["rating"].dtype == np.float32
    if data.has_timestamp:
        assert inter["timestamp"].dtype == np.int64
    assert len(inter) > 0
    assert np.array_equal(np.unique(inter["user"]), np.arange(data.n_users))  # dense: every user interacts
    assert inter["item"].between(0, data.n_items - 1).all()
    for ids, size in ((data.user_ids, data.n_users), (data.item_ids, data.n_items)):
        assert ids.ndim == 1 and len(ids) == size and all(isinstance(i, str) for i in ids)
        assert len(set(ids)) == size
    for table, size in ((data.items, data.n_items), (data.users, data.n_users)):
        assert table is None or len(table) == size


@pytest.mark.parametrize("name", READERS)
def test_every_reader_reads_its_fixtures(name: str, tmp_path: Path) -> None:
    reader = get_reader(name)
    cases = reader.fixtures(tmp_path)
    assert cases, f"{name} defines no fixture"
    for case, cfg in cases.items():
        assert type(cfg) is reader.Config and cfg.name == name, case
        data = reader.read(cfg, seed=0)
        assert_valid(data)
        loaded = load_dataset(OmegaConf.structured(cfg), seed=0)  # the path a composed config takes
        assert_valid(loaded)
        assert loaded.n_users <= data.n_users
        describe(loaded)


@pytest.mark.parametrize("name", READERS)
def test_every_reader_schema_round_trips(name: str, tmp_path: Path) -> None:
    reader = get_reader(name)
    assert reader.name == name and resolve_alias(name) == name
    assert all(resolve_alias(alias) == name for alias in reader.aliases)
    for cfg in reader.fixtures(tmp_path).values():  # fixtures fill options a reader may require ("???")
        node = OmegaConf.structured(cfg)
        assert dataset_config(node) == cfg
        assert dataset_config(OmegaConf.to_container(node)) == cfg


def test_movielens_fixture_formats_agree(tmp_path: Path) -> None:
    reader = get_reader("movielens_100k")
    native, atomic = (reader.read(cfg, seed=0) for cfg in reader.fixtures(tmp_path).values())
    pd.testing.assert_frame_equal(native.interactions, atomic.interactions)
    pd.testing.assert_frame_equal(native.items, atomic.items)
    assert list(native.user_ids) == ["1", "2", "10"] == list(atomic.user_ids)


def test_unknown_dataset_names_list_the_valid_ones() -> None:
    message = "dataset.name='netflix' is not one of " + ", ".join(READERS)
    with pytest.raises(ConfigError, match=message):
        load_dataset({"name": "netflix"})
    with pytest.raises(ConfigError, match=message):
        get_reader("netflix")
    assert "ml-100k" in names_and_aliases() and set(READERS) <= set(names_and_aliases())


def test_unknown_or_mistyped_options_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.sourse; valid: name, cache_dir, min_user_interactions"):
        dataset_config({"name": "movielens_100k", "sourse": "local"})
    with pytest.raises(ConfigError, match="n_userz"):
        dataset_config({"name": "synthetic", "synthetic": {"n_userz": 3}})
    with pytest.raises(ConfigError, match="min_user_interactions"):
        dataset_config({"name": "synthetic", "min_user_interactions": "many"})


def test_readers_without_download_say_so() -> None:
    for reader in dataset_readers().values():
        if not reader.fetchable:
            with pytest.raises(ConfigError, match="nothing to fetch"):
                reader.fetch(reader.Config())
    assert get_reader("movielens_100k").fetchable and not get_reader("synthetic").fetchable


TOY_READER = '''
"""A toy dataset: implicit feedback with string ids, no timestamps."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recdistill.data.config import DatasetConfig
from recdistill.data.readers.base import DatasetReader
from recdistill.data.tables import RecData


class Toy(DatasetReader):
    aliases = ("toy-set",)

    @dataclass
    class Config(DatasetConfig):
        name: str = "toy"
        repeat: int = 1

    def read(self, cfg, seed):
        inter = pd.DataFrame({"user": np.array([0, 0, 1] * cfg.repeat, dtype="int64"),
                              "item": np.array([0, 1, 1] * cfg.repeat, dtype="int64")})
        return RecData("toy", inter, None, None, np.array(["u-a", "u-b"]), np.array(["005", "5"]))

    def fixtures(self, directory: Path):
        return {"tiny": self.Config()}
'''


@pytest.fixture
def toy_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A reader module dropped into the readers package (via an extra package path)."""
    (tmp_path / "toy.py").write_text(textwrap.dedent(TOY_READER))
    monkeypatch.setattr(readers_package, "__path__", [*readers_package.__path__, str(tmp_path)])
    dataset_readers.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    dataset_readers.cache_clear()
    sys.modules.pop(f"{readers_package.__name__}.toy", None)
    ConfigStore.instance().repo.get("dataset_schema", {}).pop("toy.yaml", None)


def test_a_reader_module_dropped_into_the_package_is_discovered(toy_reader: Path) -> None:
    assert "toy" in dataset_readers() and resolve_alias("toy-set") == "toy"
    data = load_dataset({"name": "toy", "min_user_interactions": 0})
    assert not data.has_rating and not data.has_timestamp
    assert list(data.item_ids) == ["005", "5"]  # raw ids as written: two items
    info = describe(data)
    assert info["rating_histogram"] is None and info["time_span"] is None
    # one YAML next to it is all the config side needs: the schema is registered from the registry
    (toy_reader / "dataset").mkdir()
    (toy_reader / "dataset" / "toy.yaml").write_text(
        "defaults:\n  - /dataset_schema/toy@_here_\n  - _self_\nname: toy\nmin_user_interactions: 0\nrepeat: 2\n")
    cfg = compose_run(["dataset=toy", f"hydra.searchpath=[file://{toy_reader}]"])
    assert load_dataset(cfg.dataset).interactions.shape == (3, 2)  # repeated pairs: keep_last by default
    cfg = compose_run(["dataset=toy", "dataset.duplicates=keep_all", f"hydra.searchpath=[file://{toy_reader}]"])
    assert load_dataset(cfg.dataset).interactions.shape == (6, 2)
    with pytest.raises(Exception, match="repeats"):
        compose_run(["dataset=toy", "dataset.repeats=3", f"hydra.searchpath=[file://{toy_reader}]"])


def compose_run(overrides: list[str]):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("overrides, key", [
    (["dataset.sourse=recbole"], "sourse"),
    (["dataset=synthetic", "dataset.source=local"], "source"),
    (["dataset=synthetic", "dataset.synthetic.n_userz=3"], "n_userz"),
    (["dataset.min_user_interactions=many"], "many"),
])
def test_dataset_mistakes_fail_at_composition(overrides: list[str], key: str) -> None:
    with pytest.raises(Exception) as raised:
        compose_run(overrides)
    assert key in f"{raised.value} {raised.value.__cause__}"


def test_composed_dataset_is_typed_by_its_reader() -> None:
    cfg = compose_run(["+experiment=synthetic_meta"])
    typed = dataset_config(cfg.dataset)
    assert type(typed) is get_reader("synthetic").Config and typed.synthetic.n_users == 80


def test_check_rejects_broken_tables() -> None:
    inter = pd.DataFrame({"user": np.array([0, 1], dtype="int64"), "item": np.array([0, 2], dtype="int64")})
    ids = np.array(["a", "b"])
    with pytest.raises(DataError, match=r"'broken': internal item ids span 0..2, outside 0..1"):
        RecData("broken", inter, None, None, ids, ids).check()
    with pytest.raises(DataError, match="user_ids must hold str"):
        RecData("broken", inter, None, None, np.array([1, 2]), np.array(["a", "b", "c"])).check()
    with pytest.raises(DataError, match="raw item id 'a' maps to two internal ids"):
        RecData("broken", inter, None, None, ids, np.array(["a", "b", "a"])).check()
    with pytest.raises(DataError, match="'rating' is float64, expected float32"):
        RecData("broken", inter.assign(rating=1.0), None, None, ids, np.array(["a", "b", "c"])).check()


def test_every_option_of_a_reader_determines_its_split_key_except_the_cache_folder():
    from recdistill.data.readers.base import DatasetReader

    class FileReader(DatasetReader):  # a reader that keeps the default `data_key`
        Config = None

        def read(self, cfg, seed):
            raise NotImplementedError

        def fixtures(self, directory):
            return {}

    key = lambda **options: FileReader().data_key({"name": "file", "cache_dir": "~/c", **options}, seed=0)  # noqa: E731
    assert key(path="a.tsv") != key(path="b.tsv")
    assert FileReader().data_key({"name": "file", "cache_dir": "/x", "path": "a"}, 0) == key(path="a")
