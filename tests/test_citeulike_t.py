"""dataset=citeulike_t: the Topology Distillation study's split, checked against its SHA-256 before
every read; fetched from a local copy or converted from the study's pickles (offline fakes only,
and a pickle carrying code is refused without running it); composed by +experiment=citeulike_rank_kd."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import urllib.error
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir, main
from recdistill.config_schema import check_run_config, register_schemas
from recdistill.data import fetch_citeulike_t as fetching
from recdistill.data.fetch_citeulike_t import CHECKSUMS, PICKLES, REPOSITORY, fetch_citeulike_t, raw_urls
from recdistill.data.given_split import load_given
from recdistill.data.readers.citeulike_t import CiteULikeT
from recdistill.data.readers.files import Files
from recdistill.data.readers.registry import dataset_config, get_reader, resolve_alias
from recdistill.data.split_config import GivenSplit, to_split_config
from recdistill.errors import ConfigError, DataError, DownloadError
from recdistill.evaluation.config import to_evaluator_config
from recdistill.run.spine import run

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "citeulike-t"
needs_shared = pytest.mark.skipif(not (SHARED / "train.tsv").is_file(), reason=f"no published copy in {SHARED}")

# The study's pickles in miniature: user -> items as a list, a bare int, a tuple or a (protocol-4) set.
TINY = {"train": {1: [4, 2, 3], 0: [1, 0]}, "valid": {0: 2, 1: 5}, "test": {1: (0,), 0: {6}}}
# What they convert to: users ascending, each user's items in stored order.
TINY_TSV = {"train": "user_id\titem_id\n0\t1\n0\t0\n1\t4\n1\t2\n1\t3\n", "valid": "user_id\titem_id\n0\t2\n1\t5\n",
            "test": "user_id\titem_id\n0\t6\n1\t0\n"}
TINY_SUMS = {part: hashlib.sha256(text.encode()).hexdigest() for part, text in TINY_TSV.items()}


def compose_run(*overrides: str):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def fixture_config(tmp_path: Path) -> CiteULikeT.Config:
    return get_reader("citeulike_t").fixtures(tmp_path)["tsv"]


# ---------------------------------------------------------------- composition and reading


def test_the_experiment_composes_citeulike_with_its_given_split(tmp_path: Path) -> None:
    cfg = compose_run("+experiment=citeulike_rank_kd", f"cache_dir={tmp_path}")
    typed = dataset_config(cfg.dataset)
    assert type(typed) is CiteULikeT.Config and isinstance(typed, Files.Config)  # so split=given accepts it
    assert typed.folder == f"{tmp_path}/citeulike-t" and typed.cache_dir == str(tmp_path)
    assert (typed.format, typed.columns.user, typed.columns.item) == ("tsv", "user_id", "item_id")
    assert typed.sha256 == CHECKSUMS and typed.min_user_interactions == 0
    assert to_split_config(cfg.split) == GivenSplit()  # the three files come from dataset.folder
    evaluator = to_evaluator_config(cfg.evaluator)
    assert (cfg.task, evaluator.protocol, evaluator.mask_history) == ("ranking", "full", True)
    assert (cfg.teacher.name, cfg.teacher.dim, cfg.student.name, cfg.student.dim) == ("bpr_mf", 256, "bpr_mf", 16)
    assert check_run_config(cfg).experiment_name == "citeulike_rank_kd"
    assert resolve_alias("citeulike-t") == "citeulike_t"


def test_given_split_takes_the_files_from_the_folder_and_explicit_paths_win(tmp_path: Path) -> None:
    cfg = fixture_config(tmp_path)
    data, part = load_given(asdict(cfg), GivenSplit())
    assert data.report["given_split"]["files"]["test"] == f"{cfg.folder}/test.tsv"
    assert np.bincount(part).tolist() == [5, 3, 3] and data.report["given_split"]["items_not_in_train"] == 2
    copy = tmp_path / "elsewhere" / "test.tsv"
    copy.parent.mkdir()
    copy.write_bytes((Path(cfg.folder) / "test.tsv").read_bytes())
    data, _ = load_given(asdict(cfg), GivenSplit(test=str(copy)))
    assert data.report["given_split"]["files"] == {"train": f"{cfg.folder}/train.tsv",
                                                   "valid": f"{cfg.folder}/valid.tsv", "test": str(copy)}


def test_read_is_the_union_of_the_three_files(tmp_path: Path) -> None:
    cfg = fixture_config(tmp_path)
    data = get_reader("citeulike_t").read(cfg, seed=0)
    assert data.name == "citeulike_t" and (data.n_users, data.n_items, len(data.interactions)) == (3, 4, 11)
    assert list(data.item_ids) == ["0", "1", "2", "3"] and not data.has_rating and not data.has_timestamp


def test_a_changed_file_is_refused_naming_it_and_both_digests(tmp_path: Path) -> None:
    cfg = fixture_config(tmp_path)
    valid = Path(cfg.folder) / "valid.tsv"
    valid.write_text(valid.read_text() + "2\t0\n", encoding="utf-8")
    actual = hashlib.sha256(valid.read_bytes()).hexdigest()
    message = rf"{valid}: SHA-256 {actual}, expected {cfg.sha256['valid']} \(dataset.sha256.valid, by default"
    with pytest.raises(DataError, match=message):
        get_reader("citeulike_t").read(cfg, seed=0)
    with pytest.raises(DataError, match=message):
        load_given(asdict(cfg), GivenSplit())


def test_checksums_name_the_three_parts(tmp_path: Path) -> None:
    cfg = fixture_config(tmp_path)
    with pytest.raises(ConfigError, match=r"dataset.sha256.valid='abc' is not a SHA-256 \(64 hex digits\)"):
        get_reader("citeulike_t").read(replace(cfg, sha256={**cfg.sha256, "valid": "abc"}), seed=0)
    with pytest.raises(ConfigError, match="dataset.sha256 must name exactly train, valid, test, got extra, test, "):
        load_given(asdict(replace(cfg, sha256={**cfg.sha256, "extra": CHECKSUMS["test"]})), GivenSplit())


def test_verification_is_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = fixture_config(tmp_path)
    reader = get_reader("citeulike_t")
    reader.read(cfg, seed=0)
    hashed: list[str] = []
    monkeypatch.setattr("recdistill.utils.fingerprint.sha256_of", lambda path: hashed.append(str(path)) or "x")
    reader.read(cfg, seed=0)  # the verification and the fingerprint both come from the memo
    assert hashed == []


def test_missing_files_say_where_they_go_and_how_to_fetch_them(tmp_path: Path) -> None:
    cfg = dataset_config({"name": "citeulike_t", "cache_dir": str(tmp_path)})
    folder = tmp_path / "citeulike-t"
    assert cfg.folder == str(folder)  # `data fetch --cache-dir DIR` gives no folder: <cache_dir>/citeulike-t
    for attempt in (lambda: get_reader("citeulike_t").read(cfg, seed=0), lambda: load_given(asdict(cfg), GivenSplit())):
        with pytest.raises(DownloadError) as raised:
            attempt()
        message = str(raised.value)
        assert f"{folder}/train.tsv, {folder}/valid.tsv, {folder}/test.tsv not found" in message
        assert f"put train.tsv, valid.tsv and test.tsv (header user_id<TAB>item_id) into {folder}/" in message
        assert "recdistill data fetch citeulike-t" in message and "source=local" in message
        assert all(f"{CHECKSUMS[p]}  {p}.tsv" in message for p in CHECKSUMS)


def test_the_split_key_ignores_where_the_files_are() -> None:
    reader = get_reader("citeulike_t")
    key = lambda **o: reader.data_key(asdict(dataset_config({"name": "citeulike_t", **o})), 0)  # noqa: E731
    assert key(cache_dir="/a") == key(cache_dir="/b", folder="/c", source="local", local_dir="/d")
    assert key() != key(duplicates="keep_all")


# ---------------------------------------------------------------- fetching the study's pickles (offline)


def serving(files: dict[str, bytes], calls: list[str] | None = None):
    """An opener that serves `files` by URL and answers 404 for anything else."""
    def opener(url: str, timeout: float):
        if calls is not None:
            calls.append(url)
        if url in files:
            return io.BytesIO(files[url])
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
    return opener


def on_master(pickles: dict[str, bytes]) -> dict[str, bytes]:
    """The pickles where raw.githubusercontent.com serves them from branch master (main answers 404)."""
    return {raw_urls(PICKLES[part])[1]: payload for part, payload in pickles.items()}


def tiny_pickles(protocol: int = 4) -> dict[str, bytes]:
    return {part: pickle.dumps(mapping, protocol=protocol) for part, mapping in TINY.items()}


def test_downloaded_pickles_are_converted_verified_and_published(tmp_path: Path) -> None:
    calls: list[str] = []
    folder = tmp_path / "cache" / "citeulike-t"
    got, origin = fetch_citeulike_t(folder, checksums=TINY_SUMS, opener=serving(on_master(tiny_pickles()), calls))
    assert got == folder and calls[:2] == raw_urls("dataset/Train") and "master/dataset/Test" in origin
    assert {p: (folder / f"{p}.tsv").read_text() for p in TINY_TSV} == TINY_TSV
    marker = json.loads((folder / ".complete").read_text())
    assert marker["sha256"] == {f"{p}.tsv": s for p, s in TINY_SUMS.items()}
    assert sorted(p.name for p in folder.parent.iterdir()) == ["citeulike-t"]  # no staging folder left
    offline = serving({})
    assert fetch_citeulike_t(folder, checksums=TINY_SUMS, opener=offline) == (folder, fetching.ALREADY)


def test_protocol_3_pickles_with_sets_load(tmp_path: Path) -> None:
    """Python 3.6 pickled with protocol 3, where a set is rebuilt by calling builtins.set."""
    folder = tmp_path / "cache" / "citeulike-t"
    got, _ = fetch_citeulike_t(folder, checksums=TINY_SUMS, opener=serving(on_master(tiny_pickles(protocol=3))))
    assert {p: (got / f"{p}.tsv").read_text() for p in TINY_TSV} == TINY_TSV


def test_a_pickle_carrying_code_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    pickles = {**tiny_pickles(), "valid": pickle.dumps({0: Exploit()}, protocol=2)}
    with pytest.raises(DownloadError, match=r"refused the global (posix|os|nt)\.system") as raised:
        fetch_citeulike_t(tmp_path / "c" / "citeulike-t", checksums=TINY_SUMS, opener=serving(on_master(pickles)))
    assert not marker.exists() and not (tmp_path / "c" / "citeulike-t").exists()
    assert "put train.tsv, valid.tsv and test.tsv" in str(raised.value)


@pytest.mark.parametrize("mapping, message", [
    (["not", "a", "dict"], "expected a dict of user -> items, got list"),
    ({"0": [1]}, "user key '0' is a str, expected an int"),
    ({0: [1, "2"]}, r"user 0 maps to \"\[1, '2'\]\", expected an int item"),
    ({0: {1: 2}}, r"user 0 maps to '\{1: 2\}'"),
])
def test_pickles_of_another_structure_are_refused(tmp_path: Path, mapping, message: str) -> None:
    pickles = {**tiny_pickles(), "train": pickle.dumps(mapping, protocol=4)}
    with pytest.raises(DownloadError, match=message):
        fetch_citeulike_t(tmp_path / "citeulike-t", checksums=TINY_SUMS, opener=serving(on_master(pickles)))


def test_a_conversion_that_misses_the_checksums_is_not_published(tmp_path: Path) -> None:
    pickles = {**tiny_pickles(), "test": pickle.dumps({0: [6], 1: [0], 2: [1]}, protocol=4)}
    folder = tmp_path / "citeulike-t"
    with pytest.raises(DownloadError, match=r"test.tsv from the converted pickles .*: SHA-256 [0-9a-f]{64}, expected "
                                            + TINY_SUMS["test"]):
        fetch_citeulike_t(folder, checksums=TINY_SUMS, opener=serving(on_master(pickles)))
    assert not folder.exists() and list(tmp_path.iterdir()) == []


def test_a_network_failure_names_the_manual_steps(tmp_path: Path) -> None:
    def offline(url: str, timeout: float):
        raise urllib.error.URLError("no route to host")

    folder = tmp_path / "citeulike-t"
    with pytest.raises(DownloadError) as raised:
        fetch_citeulike_t(folder, opener=offline)
    message = str(raised.value)
    assert f"Could not obtain CiteULike-t from https://github.com/{REPOSITORY}" in message
    assert all(url in message for url in raw_urls("dataset/Train")) and "no route to host" in message
    assert f"into {folder}/" in message and "source=local" in message and "../shared/data/citeulike-t" in message
    assert all(f"{CHECKSUMS[p]}  {p}.tsv" in message for p in CHECKSUMS)


# ---------------------------------------------------------------- source=local on the published copy


@needs_shared
def test_source_local_copies_the_published_files_through_the_cli(tmp_path: Path, capsys) -> None:
    main(["data", "fetch", "citeulike-t", "source=local", f"local_dir={SHARED}", "--cache-dir", str(tmp_path)])
    assert "verified in" in capsys.readouterr().out
    folder = tmp_path / "citeulike-t"
    assert all((folder / f"{p}.tsv").read_bytes() == (SHARED / f"{p}.tsv").read_bytes() for p in CHECKSUMS)
    assert json.loads((folder / ".complete").read_text())["origin"]["source"] == str(SHARED.resolve())
    data, part = load_given(asdict(dataset_config({"name": "citeulike_t", "cache_dir": str(tmp_path)})),
                            GivenSplit())
    assert (data.n_users, data.n_items) == (5219, 25181) and np.bincount(part).tolist() == [115142, 5219, 5219]
    assert data.report["given_split"]["items_not_in_train"] == 482


def test_source_local_refuses_a_folder_whose_files_differ(tmp_path: Path) -> None:
    cfg = fixture_config(tmp_path / "given")
    with pytest.raises(DataError, match=r"train.tsv: SHA-256 [0-9a-f]{64}, expected " + CHECKSUMS["train"]) as error:
        fetch_citeulike_t(tmp_path / "cache" / "citeulike-t", "local", Path(cfg.folder))
    assert "Point local_dir at an unmodified copy" in str(error.value) and "Delete it" not in str(error.value)
    assert not (tmp_path / "cache" / "citeulike-t").exists()


# ---------------------------------------------------------------- whole runs


def test_the_experiment_runs_on_a_tiny_copy(tmp_path: Path) -> None:
    """The experiment's composition end to end, on 30 users through dataset.folder and its own checksums."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "tiny"
    folder.mkdir()
    rows = {part: ["user_id\titem_id\n"] for part in ("train", "valid", "test")}
    for user in range(30):
        items = rng.choice(40, size=8, replace=False)
        rows["train"] += [f"{user}\t{item}\n" for item in items[:6]]
        rows["valid"].append(f"{user}\t{items[6]}\n")
        rows["test"].append(f"{user}\t{items[7]}\n")
    sums = []
    for part, lines in rows.items():
        (folder / f"{part}.tsv").write_text("".join(lines), encoding="utf-8")
        sums.append(f"dataset.sha256.{part}={hashlib.sha256(''.join(lines).encode()).hexdigest()}")
    cfg = compose_run("+experiment=citeulike_rank_kd", f"cache_dir={tmp_path / 'cache'}", f"dataset.folder={folder}",
                      *sums, "teacher.dim=8", "student.dim=4", "trainer=ranking_debug", "evaluator.latency_repeats=1",
                      "distill.teacher_topk=10", "distill.terms.rrd.n_interesting=4",
                      "distill.terms.rrd.n_uninteresting=4", "device=cpu")
    metrics = run(cfg, tmp_path / "run")
    assert metrics["run"]["protocol"]["split"]["name"] == "given"
    assert metrics["run"]["protocol"]["data"]["dataset"] == "citeulike_t"
    assert {"teacher", "student", "student_kd"} <= set(metrics) and "ndcg@10" in metrics["student_kd"]["test"]


@pytest.mark.slow
@needs_shared
def test_one_epoch_on_the_published_split(tmp_path: Path) -> None:
    """The real split from an empty cache: fetch (source=local), then one epoch per role (~1-2 min on 2 CPU cores)."""
    cache = tmp_path / "cache"
    get_reader("citeulike_t").fetch(dataset_config({"name": "citeulike_t", "cache_dir": str(cache),
                                                    "source": "local", "local_dir": str(SHARED)}))
    cfg = compose_run("+experiment=citeulike_rank_kd", f"cache_dir={cache}", "trainer.teacher.epochs=1",
                      "trainer.student.epochs=1", "teacher.dim=64", "evaluator.latency_repeats=1", "device=cpu")
    metrics = run(cfg, tmp_path / "run")
    assert metrics["run"]["protocol"]["split"]["name"] == "given"
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["sizes"] == {"train": 115142, "valid": 5219, "test": 5219}
    assert split["given"]["items_not_in_train"] == 482
    assert 0 <= metrics["student"]["test"]["ndcg@10"] <= 1
