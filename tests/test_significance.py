"""Holm's adjustment and the bootstrap interval of `recdistill compare`, on hand-computed values."""

import numpy as np
import pytest

from recdistill.reporting.significance import bootstrap_ci, holm, paired_tests


def test_holm_matches_hand_computed_adjustments():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(1 * 0.04, 0.06): step-down keeps the order
    assert holm(np.array([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])
    # sorted 0.001, 0.01, 0.04, 0.2 -> 4 * 0.001, 3 * 0.01, 2 * 0.04, 1 * 0.2
    assert holm(np.array([0.001, 0.2, 0.01, 0.04])) == pytest.approx([0.004, 0.2, 0.03, 0.08])
    assert holm(np.array([0.6, 0.7])) == pytest.approx([1.0, 1.0])  # 1.2 capped at 1, then carried up


def test_holm_leaves_untested_rows_out_of_the_family():
    adjusted = holm(np.array([0.02, np.nan, 0.5]))  # a family of 2, not 3
    assert adjusted[0] == pytest.approx(0.04) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.5)
    assert holm(np.array([])).shape == (0,) and np.isnan(holm(np.array([np.nan]))).all()


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_users():
    rng = np.random.default_rng(7)
    few, many = rng.normal(0.01, 0.1, 40), rng.normal(0.01, 0.1, 4000)
    (few_low, few_high), (many_low, many_high) = bootstrap_ci(few), bootstrap_ci(many)
    assert few_low < few.mean() < few_high and many_low < many.mean() < many_high
    assert (many_high - many_low) < (few_high - few_low) / 5  # width ~ 1 / sqrt(users): 10 times narrower
    normal_width = 2 * 1.96 * many.std(ddof=1) / np.sqrt(len(many))
    assert many_high - many_low == pytest.approx(normal_width, rel=0.1)
    assert bootstrap_ci(few) == (few_low, few_high)  # fixed seed: the same interval every time


def test_bootstrap_interval_edge_cases():
    assert bootstrap_ci(np.array([0.2, 0.2, 0.2])) == (0.2, 0.2)
    assert np.isnan(bootstrap_ci(np.array([0.2]))).all() and np.isnan(bootstrap_ci(np.array([]))).all()
    result = paired_tests(np.array([0.5, 0.7, 0.9, 0.4]), np.array([0.4, 0.4, 0.5, 0.5]))
    assert result["diff"] == pytest.approx(0.175)  # (0.1 + 0.3 + 0.4 - 0.1) / 4
    assert result["ci_low"] < 0.175 < result["ci_high"]
