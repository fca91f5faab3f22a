"""`recdistill export` and `recdistill recommend` on seconds-long synthetic runs: a SASRec pair
(+experiment=synthetic_rank_kd, its distilled student from the run folder) and a BPR-MF pair (its
student from the model cache). Each run is trained and exported once per module."""

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir, main
from recdistill.config_schema import register_schemas
from recdistill.errors import ConfigError, DataError
from recdistill.models.checkpoint import load_model
from recdistill.run.spine import run
from recdistill.serving import Recommender, UnknownIdError, export_run
from recdistill.serving.scorers import TorchScorer

pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxscript, onnxruntime) is in dev")
import onnx  # noqa: E402
import onnxruntime  # noqa: E402

# The warm BPR-MF pair of tests/golden.py (MF_WARM): synthetic_rank_kd sets SASRec keys that BPR-MF refuses.
BPR_MF_PAIR = ("+experiment=synthetic_coldstart_item", "split=leave_one_out", "transfer=none", "students=true",
               "baselines=[]", "teacher.dim=32")
SASREC_PAIR = ("+experiment=synthetic_rank_kd", "train_student_alone=false")


@contextmanager
def one_thread():
    """Tiny models train fastest on one thread (and do not fight other jobs for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train(folder: Path, overrides: tuple[str, ...]) -> Path:
    """A finished run in folder/run, its model cache in folder/cache."""
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="config", overrides=[*overrides, f"cache_dir={folder / 'cache'}"])
    run(cfg, folder / "run")
    return folder / "run"


@pytest.fixture(scope="module")
def sasrec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sasrec")
    with one_thread():
        run_dir = train(folder, SASREC_PAIR)
        return SimpleNamespace(run_dir=run_dir, role="student_kd", export=export_run(run_dir, "student_kd"))


@pytest.fixture(scope="module")
def bpr_mf(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpr_mf")
    with one_thread():
        run_dir = train(folder, BPR_MF_PAIR)
        return SimpleNamespace(run_dir=run_dir, role="student", cache=folder / "cache",
                               export=export_run(run_dir, "student", out=folder / "export"))


def split_frames(run_dir: Path) -> dict[str, pd.DataFrame]:
    split_dir = json.loads((run_dir / "split.json").read_text())["path"]
    return {part: pd.read_parquet(f"{split_dir}/{part}.parquet") for part in ("train", "valid", "test")}


@pytest.mark.parametrize("pair", ["sasrec", "bpr_mf"])
def test_onnx_and_checkpoint_give_the_same_lists(pair, request):
    served = request.getfixturevalue(pair)
    exported = Recommender.open(served.export)
    checkpoint = Recommender.open(served.run_dir, role=served.role)
    assert exported.source["source"] == "onnx export" and checkpoint.source["source"] == "checkpoint"
    users = list(exported.catalog.user_ids)
    onnx_lists, torch_lists = exported.recommend_users(users, k=10), checkpoint.recommend_users(users, k=10)
    assert len(onnx_lists) == 10 * len(users)
    pd.testing.assert_frame_equal(onnx_lists.drop(columns="score"), torch_lists.drop(columns="score"))
    assert np.abs(onnx_lists["score"] - torch_lists["score"]).max() <= 1e-4
    history = list(exported.catalog.item_ids[[3, 1, 4, 1, 5]])  # a new user with a 5-item history (one repeat)
    new_onnx, new_torch = exported.recommend(history=history, k=10), checkpoint.recommend(history=history, k=10)
    assert len(new_onnx.items) == 10 and new_onnx.items == new_torch.items and not set(history) & set(new_onnx.items)
    assert new_onnx.scores == pytest.approx(new_torch.scores, abs=1e-4)
    manifest = json.loads((served.export / "manifest.json").read_text())
    assert manifest["check"]["max_abs_diff"] <= 1e-4 and manifest["check"]["n_users"] == len(users)
    assert all(p["lists_identical"] for p in manifest["check"]["passes"].values())
    assert len(manifest["check"]["passes"]) == 2  # sequence: two history lengths; dot product: users, fold-in


def test_the_export_folder_is_self_contained(sasrec, tmp_path):
    manifest = json.loads((sasrec.export / "manifest.json").read_text())
    assert manifest["role"] == "student_kd" and manifest["serving"]["kind"] == "sequence"
    assert manifest["history"]["splits"] == ["train", "valid", "test"]
    assert manifest["ties"]["seed"] == 0 and "hash of (seed, raw user id, raw item id)" in manifest["ties"]["rule"]
    assert manifest["protocol"]["ties"].startswith("equal scores ordered by a hash")
    assert {"torch", "onnx", "onnxscript", "onnxruntime"} <= set(manifest["versions"])
    assert set(manifest["files"]) == {"model.onnx", "users.parquet", "items.parquet", "history.parquet"}
    assert manifest["serving"]["graphs"]["opset"] >= 18
    # raw ids as text, titles, and every interaction of train + valid + test as history, in time order
    users = pd.read_parquet(sasrec.export / "users.parquet")["user"]
    items = pd.read_parquet(sasrec.export / "items.parquet")
    assert users.dtype == "string" and items["item"].dtype == "string" and items["title"].notna().all()
    history = pd.read_parquet(sasrec.export / "history.parquet")
    frames = split_frames(sasrec.run_dir)
    assert len(history) == sum(len(f) for f in frames.values()) == manifest["history"]["n_interactions"]
    last = history.groupby("user")["item"].last()
    test = frames["test"].set_index("user")["item"]  # leave-one-out: each user's latest item
    assert (last[test.index] == test).all()
    # served from a copy, without the run folder
    copy = shutil.copytree(sasrec.export, tmp_path / "copy")
    user = str(users.iloc[0])
    assert Recommender.open(copy).recommend(user=user).items == Recommender.open(sasrec.export).recommend(user=user).items


def test_the_sequence_graph_has_dynamic_batch_and_history_length_and_keeps_its_padding_mask(sasrec):
    graph = onnx.load(sasrec.export / "model.onnx")
    dims = [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert [i.name for i in graph.graph.input] == ["seq"] and dims == ["batch", "length"]
    session = onnxruntime.InferenceSession(str(sasrec.export / "model.onnx"), providers=["CPUExecutionProvider"])
    checkpoint = TorchScorer(load_model(sasrec.run_dir / "checkpoints" / "student_kd.pt")[0])
    catalog = Recommender.open(sasrec.export).catalog
    for batch, length in ((1, 1), (3, 5), (7, 16)):
        seq = catalog.sequences(np.arange(batch), length)  # (B, L)
        scores = session.run(None, {"seq": seq})[0]
        assert scores.shape == (batch, catalog.n_items)
        assert np.abs(scores - checkpoint.score_sequences(seq)).max() <= 1e-4
    # the same 3 items behind 0 or 13 empty slots score the same: padded keys are masked, positions
    # count from the first item (an is_causal-only attention would read the padding)
    short = catalog.sequences(np.arange(4), 3)
    padded = np.concatenate([np.zeros((4, 13), dtype=np.int64), short], 1)
    scores_short, scores_padded = (session.run(None, {"seq": s})[0] for s in (short, padded))
    assert np.abs(scores_short - scores_padded).max() <= 1e-5


def test_seen_items_are_excluded_unless_asked(sasrec):
    recommender = Recommender.open(sasrec.export)
    user = str(recommender.catalog.user_ids[5])
    _, seen = recommender.catalog.seen(np.array([5]))
    seen_ids = set(recommender.catalog.item_ids[seen])
    everything = recommender.recommend(user=user, k=recommender.catalog.n_items)
    assert len(everything.items) == recommender.catalog.n_items - len(seen_ids) and not seen_ids & set(everything.items)
    assert seen_ids <= set(recommender.recommend(user=user, k=recommender.catalog.n_items, exclude_seen=False).items)


def test_a_new_user_of_an_id_model_is_folded_in_by_the_hand_computed_ridge_solution(bpr_mf):
    exported = Recommender.open(bpr_mf.export)
    manifest = json.loads((bpr_mf.export / "manifest.json").read_text())
    ridge = manifest["serving"]["fold_in"]["ridge"]
    vectors = np.load(bpr_mf.export / "item_vectors.npy")  # (I, D)
    student, _ = load_model(bpr_mf.cache / "students" / f"{manifest['source']['cache_key']}.pt")
    assert np.array_equal(vectors, student.item_factors.weight.detach().numpy())  # the frozen item vectors
    history = ["10", "20", "30", "40", "50"]
    index = exported.catalog.item_indices(history)
    # ridge regression by hand: least squares of [V; sqrt(ridge) I] p = [1; 0]
    v = vectors[index].astype(np.float64)  # (5, D)
    dim = v.shape[1]
    design = np.concatenate([v, np.sqrt(ridge) * np.eye(dim)])
    target = np.concatenate([np.ones(5), np.zeros(dim)])
    p = np.linalg.lstsq(design, target, rcond=None)[0]  # (D,)
    scores = vectors.astype(np.float64) @ p  # (I,)
    scores[index] = -np.inf  # the history is seen
    expected = list(exported.catalog.item_ids[np.argsort(-scores, kind="stable")[:10]])
    for recommender in (exported, Recommender.open(bpr_mf.run_dir, role="student")):
        folded = recommender.recommend(history=history, k=10)
        assert folded.items == expected
        assert folded.scores == pytest.approx(sorted(scores, reverse=True)[:10], abs=1e-5)


def test_unknown_users_and_items_are_clear_errors(sasrec, capsys):
    recommender = Recommender.open(sasrec.export)
    with pytest.raises(UnknownIdError, match="unknown user 'no-such-user'"):
        recommender.recommend(user="no-such-user")
    with pytest.raises(UnknownIdError, match="unknown items 'nope', 'neither'") as error:
        recommender.recommend(history=["1", "nope", "2", "neither"])
    assert error.value.kind == "item" and error.value.ids == ["nope", "neither"]
    with pytest.raises(SystemExit) as exit_code:
        main(["recommend", str(sasrec.export), "--history", "1,nope"])
    assert exit_code.value.code == 2 and "error: unknown item 'nope'" in capsys.readouterr().err


def test_export_from_a_run_whose_cached_teacher_was_deleted_is_a_clear_error(bpr_mf, tmp_path, capsys):
    key = json.loads((bpr_mf.run_dir / "metrics.json").read_text())["run"]["teacher_key"]
    cached = bpr_mf.cache / "teachers" / f"{key}.pt"
    moved = shutil.move(cached, tmp_path / "teacher.pt")
    try:
        with pytest.raises(DataError, match=f"no longer in the model cache: .*{key}.pt \\(key {key}, metrics.json "
                                            "run.teacher_key\\) is gone"):
            export_run(bpr_mf.run_dir, "teacher", out=tmp_path / "export")
        with pytest.raises(SystemExit) as exit_code:
            main(["recommend", str(bpr_mf.run_dir), "--role", "teacher", "--user", "1"])
        assert exit_code.value.code == 2 and "no longer in the model cache" in capsys.readouterr().err
        # a cache that moved is found with --cache-dir
        moved_cache = tmp_path / "moved_cache" / "teachers"
        moved_cache.mkdir(parents=True)
        shutil.copy(moved, moved_cache / f"{key}.pt")
        teacher = Recommender.open(bpr_mf.run_dir, role="teacher", cache_dir=tmp_path / "moved_cache")
        assert len(teacher.recommend(user="1").items) == 10
    finally:
        shutil.move(moved, cached)
    assert not (tmp_path / "export").exists()
    with pytest.raises(ConfigError, match="role 'popularity' is not a trained model .* valid: teacher, student, "
                                          "student_kd"):
        export_run(bpr_mf.run_dir, "popularity")


def test_cli_exports_and_recommends(bpr_mf, tmp_path, capsys):
    main(["export", str(bpr_mf.run_dir), "--role", "student", "--out", str(tmp_path / "export")])
    assert capsys.readouterr().out.strip() == str(tmp_path / "export")
    with pytest.raises(SystemExit) as exit_code:  # an earlier export is replaced, any other folder is not
        main(["export", str(bpr_mf.run_dir), "--role", "student", "--out", str(bpr_mf.run_dir)])
    assert exit_code.value.code == 2 and "exists and is not an export folder" in capsys.readouterr().err

    main(["recommend", str(tmp_path / "export"), "--user", "7", "-k", "3", "--format", "json"])
    answer = json.loads(capsys.readouterr().out)
    assert answer["user"] == "7" and [r["rank"] for r in answer["recommendations"]] == [1, 2, 3]
    assert set(answer["recommendations"][0]) == {"rank", "item", "title", "score"}
    main(["recommend", str(tmp_path / "export"), "--history", "1,2,3,4,5", "-k", "4", "--format", "csv"])
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "rank,item,title,score" and len(rows) == 5
    main(["recommend", str(tmp_path / "export"), "--user", "7", "-k", "3"])
    table = capsys.readouterr().out
    assert "top 3 for user 7" in table and answer["recommendations"][0]["title"] in table

    (tmp_path / "users.txt").write_text("7\n1\n", encoding="utf-8")
    out = tmp_path / "lists.parquet"
    main(["recommend", str(tmp_path / "export"), "--users", str(tmp_path / "users.txt"), "--out", str(out)])
    lists = pd.read_parquet(out)
    assert list(lists.columns) == ["user", "rank", "item", "title", "score"] and len(lists) == 20
    assert list(lists[lists.user == "7"].item[:3]) == [r["item"] for r in answer["recommendations"]]
    with pytest.raises(SystemExit) as exit_code:
        main(["recommend", str(tmp_path / "export"), "--users", str(tmp_path / "users.txt")])
    assert exit_code.value.code == 2 and "give --out" in capsys.readouterr().err


def test_help_lists_export_and_recommend(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    usage = capsys.readouterr().out
    assert "export RUN_DIR" in usage and "recommend RUN_DIR_OR_EXPORT" in usage
