"""Rating scales: half stars are classes of their own, never rounded into a neighbour."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from recdistill.data.batching import build_split_data
from recdistill.data.loading import with_rating_scale
from recdistill.data.rating_scale import RatingScale, check_on_scale, infer_rating_scale, parse_rating_scale
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError, DataError
from recdistill.evaluation.rating_metrics import rating_metrics
from recdistill.models.base import DataShape
from recdistill.models.registry import build_model

HALF_STARS = RatingScale(0.5, 5.0, 0.5)


def test_classes_and_labels_of_a_half_star_scale():
    assert HALF_STARS.n_classes == 10
    assert HALF_STARS.values().tolist() == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    assert HALF_STARS.labels(np.array([0.5, 2.5, 3.5, 5.0])).tolist() == [0, 4, 6, 9]  # not 2.5 -> 2, 3.5 -> 4
    assert HALF_STARS.off_scale(np.array([0.25, 3.0, 5.5, 0.0, np.nan])).tolist() == [True, False, True, True, True]
    assert str(HALF_STARS) == "0.5..5 by 0.5"


@pytest.mark.parametrize("value, message", [
    ([1, 5], "must be \\[low, high, step\\]"), ("abc", "must be \\[low, high, step\\]"),
    ([5, 1, 1], "low < high and step > 0"), ([1, 5, 0], "low < high and step > 0"),
    ([1, 5, float("nan")], "finite"), ([1, 5, 0.3], "whole number of steps")])
def test_a_bad_configured_scale_names_the_key(value, message):
    with pytest.raises(ConfigError, match="dataset.rating_scale=.*" + message):
        parse_rating_scale(value)


def test_parse_and_infer():
    assert parse_rating_scale(None) is None
    assert parse_rating_scale([0.5, 5, 0.5]) == HALF_STARS
    assert infer_rating_scale(np.array([1.0, 3.0, 5.0]), "x") == RatingScale(1.0, 5.0, 1.0)
    assert infer_rating_scale(np.array([1.5, 3.0, 4.5]), "x") == RatingScale(1.5, 4.5, 0.5)
    with pytest.raises(DataError, match="x: ratings 1..4.3 are neither whole numbers nor halves; set dataset"):
        infer_rating_scale(np.array([1.0, 4.3]), "x")
    assert infer_rating_scale(np.array([0.0, 10.0, 9.5]), "x").n_classes == 21
    with pytest.raises(DataError, match="x: ratings 1..1000 would be 1000 classes of step 1; a rating scale that wide"):
        infer_rating_scale(np.array([1.0, 2.0, 1000.0]), "x")


def test_off_scale_rating_names_where():
    with pytest.raises(DataError, match=r"ratings\.tsv line 3: rating 6 is not on the rating scale 1\.\.5 by 1 "
                                        r"\(1 such ratings\)"):
        check_on_scale(np.array([1.0, 6.0]), RatingScale(1, 5, 1), lambda row: f"ratings.tsv line {row + 2}")


def _data(ratings):
    n = 3 if ratings is None else len(ratings)
    return RecData(name="toy", interactions=pd.DataFrame({
        "user": np.zeros(n, dtype=np.int64), "item": np.arange(n, dtype=np.int64),
        **({"rating": np.asarray(ratings, dtype=np.float32)} if ratings is not None else {})}),
        items=None, users=None, user_ids=np.array(["u"]), item_ids=np.array([str(i) for i in range(max(n, 1))]))


def test_loading_takes_the_configured_then_the_readers_then_the_inferred_scale():
    data = _data([1.0, 2.5, 4.0])
    assert with_rating_scale(data, None).rating_scale == RatingScale(1.0, 4.0, 0.5)
    assert with_rating_scale(replace(data, rating_scale=HALF_STARS), None).rating_scale == HALF_STARS
    assert with_rating_scale(data, RatingScale(0, 5, 0.5)).rating_scale == RatingScale(0, 5, 0.5)
    with pytest.raises(DataError, match="dataset 'toy', interaction row 1: rating 2.5 is not on the rating scale"):
        with_rating_scale(data, RatingScale(1, 5, 1))
    with pytest.raises(ConfigError, match="rating_scale=.* is set, but dataset 'toy' has no rating column"):
        with_rating_scale(_data(None), HALF_STARS)


def test_half_stars_reach_the_model_as_their_own_classes():
    rows = [(0, 0, 2.5, 1), (0, 1, 3.5, 2), (0, 2, 0.5, 3), (0, 3, 5.0, 4)]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]).assign(row=range(4))
    splits = {"train": frame.iloc[:2], "valid": frame.iloc[2:3], "test": frame.iloc[3:]}
    train, windows = build_split_data(splits, history_length=3, scale=HALF_STARS)
    assert train.targets["label"].tolist() == [4, 6]
    assert windows["test"].targets["label"].tolist() == [9]
    assert sorted(windows["test"].hist_ratings[0][windows["test"].hist_mask[0]].tolist()) == [1, 5, 7]  # class + 1 of 0.5, 2.5, 3.5
    shape = DataShape(n_users=1, n_items=4, n_classes=10, rating_values=tuple(HALF_STARS.values().tolist()))
    model = build_model({"name": "biased_mf", "dim": 2}, shape)
    torch.testing.assert_close(model.class_values, torch.tensor(HALF_STARS.values()))


def test_accuracy_of_a_perfect_half_star_model_is_one():
    true = torch.tensor([2.5, 3.5, 3.0, 0.5])
    logits = torch.nn.functional.one_hot(torch.from_numpy(HALF_STARS.labels(true.numpy())), 10).float()
    values = torch.tensor(HALF_STARS.values())
    assert rating_metrics(logits, true, true, values)["accuracy"] == 1.0
    assert rating_metrics(logits, true, true)["accuracy"] == 0.0  # read as classes 1..10: the old defect
