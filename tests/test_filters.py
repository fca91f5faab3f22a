"""Filters before the split (positive threshold, k-core to a fixed point) and the data report."""

import numpy as np
import pandas as pd
import pytest

from recdistill.data.filters import k_core, positive_only
from recdistill.data.rating_scale import RatingScale
from recdistill.data.report import describe
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError


def make(pairs, ratings=None, times=None) -> RecData:
    users = sorted({u for u, _ in pairs})
    items = sorted({i for _, i in pairs})
    frame = pd.DataFrame({"user": [users.index(u) for u, _ in pairs], "item": [items.index(i) for _, i in pairs]},
                         dtype=np.int64)
    if ratings is not None:
        frame["rating"] = np.asarray(ratings, dtype=np.float32)
    if times is not None:
        frame["timestamp"] = np.asarray(times, dtype=np.int64)
    return RecData(name="toy", interactions=frame, items=pd.DataFrame({"title": [f"t{i}" for i in items]}),
                   users=None, user_ids=np.array(users), item_ids=np.array(items),
                   rating_scale=RatingScale(1, 5, 1) if ratings is not None else None)


def test_k_core_iterates_to_a_fixed_point():
    # With users >= 2 and items >= 2: round 1 drops user d (one item) and item z (one user), which leaves c
    # with item y only; round 2 drops c, which leaves y with user b only; round 3 drops y; b keeps x and w.
    pairs = [("a", "x"), ("a", "w"), ("b", "x"), ("b", "w"), ("b", "y"), ("c", "y"), ("c", "z"), ("d", "x")]
    data, report = k_core(make(pairs), 2, 2)
    assert list(data.user_ids) == ["a", "b"] and list(data.item_ids) == ["w", "x"]
    assert data.interactions.values.tolist() == [[0, 1], [0, 0], [1, 1], [1, 0]]
    assert data.items["title"].tolist() == ["tw", "tx"]  # side rows follow their items
    assert report == {"min_user_interactions": 2, "min_item_interactions": 2, "rounds": 3, "users_dropped": 2,
                      "items_dropped": 2, "interactions_dropped": 4}
    assert np.bincount(data.interactions["user"]).min() >= 2 and np.bincount(data.interactions["item"]).min() >= 2


def test_k_core_with_users_only_is_one_pass_and_keeps_unfiltered_data():
    pairs = [("a", "x"), ("a", "y"), ("b", "x"), ("c", "z")]
    data, report = k_core(make(pairs), 2, 0)
    assert list(data.user_ids) == ["a"] and list(data.item_ids) == ["x", "y"] and report["rounds"] == 1
    untouched = make(pairs)
    assert k_core(untouched, 1, 1) == (untouched, None)


def test_positive_threshold_keeps_ratings_at_or_above_it():
    data, report = positive_only(make([("a", "x"), ("a", "y"), ("b", "x")], ratings=[5, 3, 4]), 4.0)
    assert data.interactions["rating"].tolist() == [5.0, 4.0]
    assert report == {"threshold": 4.0, "interactions_dropped": 1}
    implicit = make([("a", "x")])
    assert positive_only(implicit, None) == (implicit, None)
    with pytest.raises(ConfigError, match="dataset.positive_threshold=4 needs ratings, but dataset 'toy' has no "
                                          "rating column"):
        positive_only(implicit, 4.0)


def test_the_report_names_scale_filters_and_suspicious_times():
    data = make([("a", "x"), ("a", "y"), ("b", "x")], ratings=[5, 3, 4], times=[-5, 10, 4_000_000_000])
    info = describe(data)
    assert info["rating_scale"] == [1, 5, 1] and info["rating_histogram"] == {"3": 1, "4": 1, "5": 1}
    assert info["suspicious_times"] == {"negative": 1, "future": 1}
    assert info["interactions_per_user"] == {"min": 1, "median": 1.5, "mean": 1.5, "max": 2}
    implicit = describe(make([("a", "x")]))
    assert implicit["rating_scale"] is None and implicit["suspicious_times"] is None
