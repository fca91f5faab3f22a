"""Repeated (user, item) interactions follow `dataset.duplicates`, and a masked history can never
silently hide a user's held-out item."""

import numpy as np
import pandas as pd
import pytest

from recdistill.data.duplicates import resolve_duplicates
from recdistill.data.loading import load_dataset
from recdistill.data.report import describe
from recdistill.data.readers.movielens_100k import MovieLens100K
from recdistill.data.split_config import LeaveOneOutSplit
from recdistill.data.splits import make_split
from recdistill.data.tables import RecData
from recdistill.errors import ConfigError, DataError
from recdistill.tasks.ranking import check_no_masked_repeats

# user 0 watches item 1 at t=1 and again at t=9 (its last interaction: the leave-one-out test item)
ROWS = [(0, 1, 4.0, 1), (0, 2, 3.0, 2), (0, 3, 5.0, 3), (0, 4, 2.0, 4), (0, 1, 5.0, 9),
        (1, 2, 4.0, 1), (1, 3, 4.0, 2), (1, 4, 1.0, 3), (1, 0, 3.0, 4)]


def data_with_repeats() -> RecData:
    frame = pd.DataFrame(ROWS, columns=["user", "item", "rating", "timestamp"]).astype(
        {"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"})
    return RecData("repeats", frame, None, None, np.array(["u0", "u1"]), np.array(["i0", "i1", "i2", "i3", "i4"]))


def test_keep_last_keeps_each_pairs_latest_interaction_in_file_order():
    data = resolve_duplicates(data_with_repeats(), "keep_last")
    kept = list(data.interactions.itertuples(index=False, name=None))
    assert kept == [row for row in ROWS if row != (0, 1, 4.0, 1)]
    assert data.report["duplicates"] == {"policy": "keep_last", "repeated_pairs": 1, "extra_rows": 1,
                                         "rows_dropped": 1}


def test_keep_all_keeps_every_row_and_error_names_an_example():
    assert len(resolve_duplicates(data_with_repeats(), "keep_all").interactions) == len(ROWS)
    with pytest.raises(DataError, match=r"repeats 1 \(user, item\) pairs in 1 extra rows \(e\.g\. user 'u0', "
                                        r"item 'i1'\); set dataset\.duplicates=keep_last"):
        resolve_duplicates(data_with_repeats(), "error")
    with pytest.raises(ConfigError, match="dataset.duplicates='sometimes' unknown; valid: keep_last, keep_all, error"):
        resolve_duplicates(data_with_repeats(), "sometimes")


def test_a_masked_history_holding_the_test_item_is_a_config_error_unless_repeats_are_dropped():
    kept_all = make_split(resolve_duplicates(data_with_repeats(), "keep_all").interactions, LeaveOneOutSplit(), 0)
    assert (0, 1) in set(zip(kept_all.test.user, kept_all.test.item))  # the re-watch is user 0's test item
    with pytest.raises(ConfigError, match=r"1 test users and 0 validation users have a held-out item .* "
                                          r"Either set dataset\.duplicates=keep_last .* or set "
                                          r"evaluator\.mask_history=false"):
        check_no_masked_repeats(kept_all)
    with pytest.raises(ConfigError, match=r"the given split's files hold the same \(user, item\) pair .* Either "
                                          r"remove those rows from the files, or set evaluator\.mask_history=false"):
        check_no_masked_repeats(kept_all, given=True)
    kept_last = make_split(resolve_duplicates(data_with_repeats(), "keep_last").interactions, LeaveOneOutSplit(), 0)
    check_no_masked_repeats(kept_last)  # the earlier watch is gone: user 0 can hit item 1
    history = pd.concat([kept_last.train, kept_last.valid])
    assert not set(zip(kept_last.test.user, kept_last.test.item)) & set(zip(history.user, history.item))


def test_the_data_report_says_what_the_policy_did(tmp_path):
    cfg = MovieLens100K().fixtures(tmp_path)["native"]
    data_file = tmp_path / "native" / "u.data"
    first = data_file.read_text(encoding="latin-1").splitlines()[0].split("\t")
    with open(data_file, "a", encoding="latin-1") as handle:  # the first pair again, later
        handle.write(f"{first[0]}\t{first[1]}\t{first[2]}\t{int(first[3]) + 10**6}\n")
    report = describe(load_dataset(cfg))["duplicates"]
    assert report["policy"] == "keep_last" and report["rows_dropped"] == 1
    with pytest.raises(DataError, match="repeats 1"):
        load_dataset({**vars(cfg), "duplicates": "error"})
