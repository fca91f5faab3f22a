"""Serving parts on hand-made data, no training: the fold-in, the tie rule of served lists, the
catalog files, the export check and the Recommender's input errors."""

import numpy as np
import pandas as pd
import pytest
import torch

from recdistill.data.tie_keys import TieKeys
from recdistill.errors import ConfigError
from recdistill.serving.catalog import Catalog, UnknownIdError
from recdistill.serving.fold_in import ridge_fold_in
from recdistill.serving.onnx_check import ExportCheckError, check_export
from recdistill.serving.present import read_users
from recdistill.serving.recommend import Recommender
from recdistill.serving.topk import mask_seen, top_items


def small_catalog(user_ids=("u0", "005", "5"), item_ids=("a", "b", "c", "d", "e"), seed=3) -> Catalog:
    """Three users: u0 saw a then b; 005 saw c; 5 saw nothing but e (in that time order)."""
    frame = pd.DataFrame({"user": [0, 0, 1, 2], "item": [0, 1, 2, 4], "timestamp": [1, 2, 1, 1]})
    items = pd.DataFrame({"title": [f"Title {i}" for i in item_ids]})
    return Catalog.from_split(np.array(user_ids), np.array(item_ids), items, [frame.iloc[:3], frame.iloc[3:]], seed)


class ConstantScorer:
    """A sequence 'model' whose scores are given: every row gets `scores` (I,)."""

    kind = "sequence"

    def __init__(self, scores) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)
        self.seen = []

    def score_sequences(self, seq):
        self.seen.append(np.array(seq))
        return np.tile(self.scores, (len(seq), 1))


def test_fold_in_solves_the_ridge_normal_equations():
    # V = [[1, 0], [0, 2]], ridge 1: (V^T V + I) p = V^T 1  ->  diag(2, 5) p = (1, 2)  ->  p = (0.5, 0.4)
    vectors = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    assert ridge_fold_in(vectors, ridge=1.0) == pytest.approx([0.5, 0.4])
    assert ridge_fold_in(vectors, ridge=1.0).dtype == np.float32
    # one item: p = v / (|v|^2 + ridge) points along the item
    assert ridge_fold_in(np.array([[3.0, 4.0]]), ridge=5.0) == pytest.approx([0.1, 0.4 / 3])
    # a history shorter than the width is solved in the dual form: the same solution as the primal one
    rng = np.random.default_rng(0)
    for length in (3, 8, 12):
        v = rng.normal(size=(length, 8))
        primal = np.linalg.solve(v.T @ v + 0.5 * np.eye(8), v.T @ np.ones(length))
        assert ridge_fold_in(v.astype(np.float32), ridge=0.5) == pytest.approx(primal, abs=1e-5)
    with pytest.raises(ValueError, match="h >= 1"):
        ridge_fold_in(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="ridge must be > 0"):
        ridge_fold_in(vectors, ridge=0.0)


def test_tied_scores_follow_the_tie_keys_of_raw_ids_not_internal_ids():
    items = np.array([f"item{i}" for i in range(20)])
    users = np.array(["alice", "bob"])
    ties = TieKeys(7, users, items)
    ranked, values = top_items(np.zeros((2, 20), dtype=np.float32), 5, np.array([0, 1]), ties)
    for row in range(2):  # all scores equal: the larger pair key ranks first
        keys = ties.pairs(torch.tensor([row]), torch.arange(20))[0].numpy()
        assert list(ranked[row]) == list(np.argsort(-keys, kind="stable")[:5])
    # the same raw ids numbered the other way round give the same raw-id lists
    order = np.arange(20)[::-1]
    flipped = TieKeys(7, users, items[order])
    again, _ = top_items(np.zeros((2, 20), dtype=np.float32), 5, np.array([0, 1]), flipped)
    assert [list(items[r]) for r in ranked] == [list(items[order][r]) for r in again]
    assert not np.array_equal(ranked[0], ranked[1])  # users differ in their tie order


def test_masked_items_are_never_listed_and_short_lists_are_padded():
    scores = np.array([[0.3, 0.9, 0.1]], dtype=np.float32)
    ranked, values = top_items(mask_seen(scores, np.array([0]), np.array([1])), 5, np.array([0]),
                               TieKeys.by_index(0, 1, 3))
    assert list(ranked[0]) == [0, 2, -1, -1, -1] and np.isinf(values[0, 2:]).all()


def test_catalog_files_keep_raw_ids_as_text_and_histories_in_time_order(tmp_path):
    catalog = small_catalog()
    catalog.write(tmp_path)
    assert list(pd.read_parquet(tmp_path / "users.parquet")["user"]) == ["u0", "005", "5"]
    read = Catalog.read(tmp_path, tie_seed=3)
    assert list(read.user_ids) == ["u0", "005", "5"] and read.titles(np.array([4])) == ["Title e"]
    assert list(read.user_indices(["5", "005"])) == [2, 1]  # "005" and "5" are different users
    assert read.sequences(np.array([0, 1]), 3).tolist() == [[0, 1, 2], [0, 0, 3]]  # item + 1, left-padded
    row, item = read.seen(np.array([0, 2]))
    assert list(zip(row, item)) == [(0, 0), (0, 1), (1, 4)]
    assert read.ties.seed == 3 and len(read.ties.user) == 4  # the known users plus the new-user slot


def test_unknown_ids_are_all_named():
    catalog = small_catalog()
    with pytest.raises(UnknownIdError, match="unknown user '5 '") as error:
        catalog.user_indices(["5 "])  # raw ids match exactly
    assert error.value.kind == "user" and isinstance(error.value, ConfigError)
    with pytest.raises(UnknownIdError, match=r"unknown items 'x', 'y': not among the 5 items") as error:
        catalog.item_indices(["a", "x", "y"])
    assert error.value.ids == ["x", "y"]


def test_recommender_reads_histories_and_excludes_seen_items():
    scorer = ConstantScorer([0.5, 0.4, 0.3, 0.2, 0.1])
    recommender = Recommender(scorer, small_catalog(), "student_kd", max_length=3)
    known = recommender.recommend(user="u0", k=2)
    assert known.items == ["c", "d"] and known.titles == ["Title c", "Title d"]  # a and b were seen
    assert scorer.seen[-1].tolist() == [[0, 1, 2]]
    assert recommender.recommend(user="u0", k=2, exclude_seen=False).items == ["a", "b"]
    new = recommender.recommend(history=["e", "a", "b", "c"], k=3)
    assert scorer.seen[-1].tolist() == [[1, 2, 3]]  # the latest max_length items, oldest first
    assert new.items == ["d"] and new.to_dict()["history"] == ["e", "a", "b", "c"]
    batch = recommender.recommend_users(["005", "u0"], k=1)
    assert batch[["user", "rank", "item", "title"]].values.tolist() == [["005", 1, "a", "Title a"],
                                                                       ["u0", 1, "c", "Title c"]]
    with pytest.raises(ConfigError, match="either a known user or a history"):
        recommender.recommend(user="u0", history=["a"], k=2)
    with pytest.raises(ConfigError, match="history is empty"):
        recommender.recommend(history=[], k=2)
    with pytest.raises(ConfigError, match=r"k=0 is out of range: give 1\.\.5"):
        recommender.recommend(user="u0", k=0)
    with pytest.raises(ConfigError, match=r"k=6 is out of range: give 1\.\.5 \(the number of items"):
        recommender.recommend_users(["u0"], k=6)  # a list longer than the catalogue cannot be filled
    assert len(recommender.recommend(user="005", k=5, exclude_seen=False).items) == 5
    with pytest.raises(UnknownIdError, match="'nobody'"):
        recommender.recommend_users(["u0", "nobody"], k=2)


def test_the_export_check_fails_on_a_score_difference_beyond_the_tolerance():
    catalog = small_catalog()
    reference = ConstantScorer([0.5, 0.4, 0.3, 0.2, 0.1])
    report = check_export(reference, ConstantScorer([0.5, 0.4, 0.3, 0.2, 0.10001]), catalog, np.arange(3), 3, 1.0)
    assert report["max_abs_diff"] == pytest.approx(1e-5, rel=0.1)
    assert all(p["lists_identical"] for p in report["passes"].values())
    with pytest.raises(ExportCheckError, match=r"max score difference 1\.\d+e-03 \(relative 1\.\d+e-03, tolerance"):
        check_export(reference, ConstantScorer([0.5, 0.4, 0.3, 0.2, 0.101]), catalog, np.arange(3), 3, 1.0)
    # Large scores: the bound is relative to the largest magnitude (float32 rounding grows with the scores).
    large = ConstantScorer([50.0, 40.0, 30.0, 20.0, 10.0])
    report = check_export(large, ConstantScorer([50.0, 40.0, 30.0, 20.0, 10.003]), catalog, np.arange(3), 3, 1.0)
    assert all(p["max_relative_diff"] == pytest.approx(3e-3 / 50, rel=0.01) for p in report["passes"].values())
    # Scores within the bound can only swap near ties (reference gap <= twice the bound): reported, not failed.
    report = check_export(reference, ConstantScorer([0.5, 0.4, 0.3, 0.2, 0.20001]), catalog, np.arange(3), 3, 1.0,
                          k=2, tolerance=0.2)
    for check in report["passes"].values():
        assert not check["lists_identical"] and check["near_tie_swaps"] > 0
        assert check["users_with_different_lists"] == 0


def test_batch_files_are_read_as_text(tmp_path):
    (tmp_path / "users.txt").write_text("005\n5\n\n", encoding="utf-8")
    assert read_users(tmp_path / "users.txt") == ["005", "5"]
    pd.DataFrame({"user": ["005", "5"], "other": [1, 2]}).to_csv(tmp_path / "users.csv", index=False)
    assert read_users(tmp_path / "users.csv") == ["005", "5"]
    with pytest.raises(ConfigError, match="no such file"):
        read_users(tmp_path / "missing.txt")
