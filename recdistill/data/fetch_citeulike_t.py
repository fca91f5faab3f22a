"""Obtain the CiteULike-t split of the Topology Distillation study (Kang et al., KDD 2021) as three
verified TSV files, train.tsv, valid.tsv and test.tsv (header `user_id<TAB>item_id`).

Two routes into the dataset's folder (`dataset.folder`, by default `<cache_dir>/citeulike-t/`):
    local   copy the three TSVs from a folder (a checkout's ../shared/data/citeulike-t, for instance)
    github  download the study's pickles dataset/Train, dataset/Valid, dataset/Test from the
            repository SeongKu-Kang/Topology_Distillation_KDD21 (raw.githubusercontent.com, branch
            main, then master), unpickle them with `PlainUnpickler` (no class or function can be
            loaded, so no code runs), check their structure and convert them to TSV
Either way each file is checked against its published SHA-256 before it enters the folder: the
files are assembled in a temporary sibling folder, which is renamed into place (or whose files are,
one by one, when the folder exists already) with a `.complete` marker recording their origin.
The conversion writes users in ascending order and each user's items in the order the pickle
stores them. That is the presumed layout of the published TSVs; the checksum check decides.
Verifying a file is remembered like its fingerprint (`recdistill.utils.fingerprint`), so the
check costs a hash once and nothing on later runs while the file is unchanged.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import pickle
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping

from recdistill.errors import ConfigError, DataError, DownloadError
from recdistill.utils.atomic import write_json
from recdistill.utils.fingerprint import file_fingerprint, sha256_of

log = logging.getLogger(__name__)

PARTS = ("train", "valid", "test")
FILES = tuple(f"{part}.tsv" for part in PARTS)
HEADER = "user_id\titem_id\n"
#: SHA-256 of the published TSVs (../shared/data/citeulike-t/SHA256SUMS), by part.
CHECKSUMS: dict[str, str] = {
    "train": "91a0713eb0f763fc8d21e6dcde0c7bf39501eb7f953a59ab791cfbc19db4f9ee",
    "valid": "0917d118c59f10ce7b57016c3769c547719255615f04c4db343b89e2b4b56082",
    "test": "367e431efe0d037a17fed3de2774de893d5f37009713d83b71de5d765958408e",
}
REPOSITORY = "SeongKu-Kang/Topology_Distillation_KDD21"
PICKLES = {"train": "dataset/Train", "valid": "dataset/Valid", "test": "dataset/Test"}
BRANCHES = ("main", "master")
SOURCES = ("auto", "github", "local")  # values of dataset.source (auto: local when local_dir is given)
FOLDER_NAME = "citeulike-t"
ALREADY = "already there"  # the origin fetch reports when the folder held verified files
MARKER = ".complete"
TIMEOUT_S = 30.0
MAX_PICKLE_BYTES = 64 << 20  # the study's pickles are a few MB; a larger answer is not one of them
Opener = Callable[..., Any]


def raw_urls(path: str) -> list[str]:
    """The raw.githubusercontent.com addresses of `path` in the study's repository, branch main then master."""
    return [f"https://raw.githubusercontent.com/{REPOSITORY}/{branch}/{path}" for branch in BRANCHES]


def manual_steps(folder: Path, checksums: Mapping[str, str] = CHECKSUMS) -> str:
    """Text telling the user where the three files go, what they must hash to and how to fetch them."""
    sums = "\n".join(f"       {checksums[part]}  {part}.tsv" for part in PARTS)
    pickles = ", ".join(PICKLES.values())
    return (
        "To provide CiteULike-t, do one of:\n"
        f"  1. run `recdistill data fetch citeulike-t` where GitHub is reachable (it downloads {pickles} from\n"
        f"     https://github.com/{REPOSITORY} and converts them), or\n"
        "  2. copy verified TSVs from a folder: `recdistill data fetch citeulike-t source=local\n"
        "     local_dir=DIR` (a recdistill checkout has them in ../shared/data/citeulike-t), or\n"
        f"  3. put train.tsv, valid.tsv and test.tsv (header user_id<TAB>item_id) into {folder}/\n"
        f"     by hand; they are checked against these SHA-256 sums (SHA256SUMS):\n{sums}\n"
        "Add the same cache_dir=DIR (or dataset.folder) to `data fetch` as to the run."
    )


def check_checksums(checksums: Mapping[str, str]) -> dict[str, str]:
    """`checksums` as {part: lowercase hex}; ConfigError unless it names train, valid and test with 64 hex digits."""
    if set(checksums) != set(PARTS):
        raise ConfigError(f"dataset.sha256 must name exactly {', '.join(PARTS)}, got {', '.join(sorted(checksums))}")
    for part, digest in checksums.items():
        text = str(digest).lower()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise ConfigError(f"dataset.sha256.{part}={digest!r} is not a SHA-256 (64 hex digits)")
    return {part: str(checksums[part]).lower() for part in PARTS}


def missing_parts(paths: Mapping[str, Path]) -> list[str]:
    """The parts of `paths` whose file is absent."""
    return [part for part in PARTS if not Path(paths[part]).is_file()]


def verify_files(paths: Mapping[str, Path], checksums: Mapping[str, str], memo_dir: str | Path | None,
                 folder: Path, source: bool = False) -> None:
    """Check each part's file against its SHA-256 (remembered under `<memo_dir>/fingerprints/`);
    DownloadError with the manual steps when a file is missing, DataError naming the file and both
    digests when one differs (`source`: the files are the user's copy being fetched from, which
    must never be deleted: the message says to use another copy instead)."""
    missing = missing_parts(paths)
    if missing:
        raise DownloadError(f"CiteULike-t: {', '.join(str(paths[part]) for part in missing)} not found.\n"
                            + manual_steps(folder, checksums))
    for part in PARTS:
        digest = file_fingerprint(paths[part], memo_dir)
        if digest != checksums[part]:
            raise DataError(f"{paths[part]}: SHA-256 {digest}, expected {checksums[part]} (dataset.sha256.{part}, "
                            f"by default the published CiteULike-t {part}.tsv's); the file is damaged or not that "
                            + ("split. Point local_dir at an unmodified copy of the published split, or see below.\n"
                               if source else
                               "split. Delete it and run `recdistill data fetch citeulike-t` again, or see below.\n")
                            + manual_steps(folder, checksums))


class PlainUnpickler(pickle.Unpickler):
    """An unpickler that loads no class and no function but the set constructors: only what pickle
    opcodes build on their own comes out (dicts, lists, tuples, ints, floats, strings, bytes, None,
    bools), plus sets and frozensets, which protocols below 4 (Python 3.6's default) build by
    calling `builtins.set`; neither can run code."""

    _ALLOWED = {("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
                ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset}

    def find_class(self, module: str, name: str) -> Any:
        """The set constructors; refuse every other global (a class or function could run code while loading)."""
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[module, name]
        raise pickle.UnpicklingError(f"refused the global {module}.{name}: only plain dicts, lists, tuples, sets, "
                                     "ints and strings are loaded (a class or function could run code)")


def plain_unpickle(payload: bytes, what: str) -> Any:
    """The plain value pickled in `payload` (see `PlainUnpickler`); DataError naming `what` otherwise."""
    try:
        return PlainUnpickler(io.BytesIO(payload)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, RecursionError, MemoryError) as exc:
        raise DataError(f"{what}: not a plain pickle of user -> items ({type(exc).__name__}: {exc})") from None


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def user_items(value: Any, what: str) -> dict[int, list[int]]:
    """{user: items in stored order} from a dict of int user -> int item or a list, tuple or set of
    int items; DataError naming `what` and the first entry that is neither."""
    if not isinstance(value, dict):
        raise DataError(f"{what}: expected a dict of user -> items, got {type(value).__name__}")
    found: dict[int, list[int]] = {}
    for user, items in value.items():
        if not _plain_int(user):
            raise DataError(f"{what}: user key {user!r} is a {type(user).__name__}, expected an int")
        if _plain_int(items):
            items = [items]
        if not isinstance(items, (list, tuple, set, frozenset)) or not all(_plain_int(i) for i in items):
            raise DataError(f"{what}: user {user} maps to {str(items)[:80]!r}, expected an int item or a "
                            "list, tuple or set of int items")
        found[user] = list(items)
    return found


def to_tsv(mapping: Mapping[int, list[int]]) -> bytes:
    """The TSV layout of the published files: the header, then users ascending, each user's items in
    their stored order (the presumed order; the checksum check decides)."""
    lines = [HEADER] + [f"{user}\t{item}\n" for user in sorted(mapping) for item in mapping[user]]
    return "".join(lines).encode("utf-8")


def _download(path: str, opener: Opener, timeout: float) -> tuple[bytes, str]:
    """(bytes, url) of `path` from the first branch that serves it; DownloadError listing each failure."""
    failures = []
    for url in raw_urls(path):
        log.info("Downloading %s", url)
        try:
            with opener(url, timeout=timeout) as response:
                payload = response.read(MAX_PICKLE_BYTES + 1)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, HTTPError, timeouts
            failures.append(f"{url}: {exc}")
            continue
        if len(payload) > MAX_PICKLE_BYTES:
            failures.append(f"{url}: more than {MAX_PICKLE_BYTES:,} bytes, not the study's pickle")
            continue
        return payload, url
    raise DownloadError("; ".join(failures))


def _check_staged(staging: Path, checksums: Mapping[str, str], origin: str) -> None:
    """DataError unless each staged file has its expected SHA-256 (hashed afresh: nothing remembered for temp files)."""
    for part in PARTS:
        digest = sha256_of(staging / f"{part}.tsv")
        if digest != checksums[part]:
            raise DataError(f"{part}.tsv from {origin}: SHA-256 {digest}, expected {checksums[part]}")


def _stage_local(local_dir: Path, staging: Path, checksums: Mapping[str, str], memo_dir: str | Path | None) -> str:
    """Verify the three TSVs in `local_dir` and copy them into `staging`; returns the origin."""
    paths = {part: local_dir / f"{part}.tsv" for part in PARTS}
    missing = missing_parts(paths)
    if missing:
        raise ConfigError(f"dataset.local_dir={str(local_dir)!r} lacks {', '.join(f'{p}.tsv' for p in missing)} "
                          f"(it must hold {', '.join(FILES)}; e.g. ../shared/data/citeulike-t)")
    verify_files(paths, checksums, memo_dir, local_dir, source=True)
    for part in PARTS:
        shutil.copyfile(paths[part], staging / f"{part}.tsv")
    _check_staged(staging, checksums, str(local_dir))
    return str(local_dir.resolve())


def _stage_github(staging: Path, checksums: Mapping[str, str], opener: Opener, timeout: float) -> str:
    """Download, unpickle, convert and verify the study's three pickles into `staging`; returns the origin."""
    urls = []
    for part in PARTS:
        payload, url = _download(PICKLES[part], opener, timeout)
        mapping = user_items(plain_unpickle(payload, url), url)
        (staging / f"{part}.tsv").write_bytes(to_tsv(mapping))
        urls.append(url)
        log.info("%s: %d users, %d rows", url, len(mapping), sum(len(items) for items in mapping.values()))
    _check_staged(staging, checksums, "the converted pickles (users ascending, items in stored order)")
    return ", ".join(urls)


def _publish(staging: Path, folder: Path, checksums: Mapping[str, str], origin: str) -> None:
    """Move the verified files of `staging` into `folder`: the whole folder in one rename when it is new,
    else file by file (each rename is atomic; readers verify every file anyway)."""
    write_json(staging / MARKER, {"origin": {"source": origin}, "sha256": {f"{p}.tsv": checksums[p] for p in PARTS}})
    (staging / MARKER).chmod(0o644)
    staging.chmod(0o755)  # mkdtemp made it private
    if not folder.exists():
        try:
            os.replace(staging, folder)
            return
        except OSError:  # another process created it meanwhile: replace its files instead
            pass
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*FILES, MARKER):
        os.replace(staging / name, folder / name)


def fetch_citeulike_t(
    folder: Path,
    source: str = "auto",
    local_dir: Path | None = None,
    *,
    checksums: Mapping[str, str] = CHECKSUMS,
    memo_dir: str | Path | None = None,
    opener: Opener = urllib.request.urlopen,
    timeout: float = TIMEOUT_S,
) -> tuple[Path, str]:
    """(folder, origin): `folder` holding train.tsv, valid.tsv and test.tsv that match `checksums`,
    copied from `local_dir` (source=local, or auto with local_dir) or converted from the study's
    pickles (github, or auto without local_dir); origin says where they came from. ConfigError for
    a bad source or local folder, DownloadError (with the manual steps) when the files cannot be had."""
    checksums = check_checksums(checksums)
    if source not in SOURCES:
        raise ConfigError(f"dataset.source={source!r} is not one of {', '.join(SOURCES)}")
    route = "local" if source == "local" or (source == "auto" and local_dir is not None) else "github"
    if route == "local" and local_dir is None:
        raise ConfigError("dataset.source=local needs dataset.local_dir=DIR, a folder holding "
                          f"{', '.join(FILES)} (e.g. ../shared/data/citeulike-t)")
    folder = Path(folder).expanduser()
    paths = {part: folder / f"{part}.tsv" for part in PARTS}
    if not missing_parts(paths):
        try:
            verify_files(paths, checksums, memo_dir, folder)
            return folder, ALREADY
        except DataError as exc:
            log.warning("%s; fetching again", str(exc).splitlines()[0])
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        if route == "local":
            origin = _stage_local(Path(local_dir).expanduser(), staging, checksums, memo_dir)
        else:
            try:
                origin = _stage_github(staging, checksums, opener, timeout)
            except (DownloadError, DataError) as exc:
                raise DownloadError(f"Could not obtain CiteULike-t from https://github.com/{REPOSITORY} "
                                    f"(files {', '.join(PICKLES.values())}): {exc}\n"
                                    + manual_steps(folder, checksums)) from None
        _publish(staging, folder, checksums, origin)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("CiteULike-t verified in %s (from %s)", folder, origin)
    return folder, origin
