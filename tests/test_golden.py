"""Golden results: synthetic runs reproduce the numbers pinned in tests/golden/ (see tests/golden.py).

A change that moves numbers on purpose re-pins them with `python -m tests.golden --write NAME ...` and says why.
"""

import pytest

from tests.golden import CASES, differences, golden_view, read_golden, run_case


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name, marks=[pytest.mark.slow] if case.slow else [])
                                  for case in CASES])
def test_run_reproduces_the_golden_numbers(case, tmp_path):
    expected = read_golden(case)
    actual = golden_view(run_case(case, tmp_path))
    found = differences(expected, actual)
    assert not found, (f"{case.name} differs from {case.path.name} (rewrite with `python -m tests.golden --write "
                       f"{case.name}` only if the change is meant):\n  " + "\n  ".join(found[:40]))


def test_every_case_has_a_golden_file_and_every_file_a_case():
    from tests.golden import GOLDEN_DIR

    assert sorted(p.stem for p in GOLDEN_DIR.glob("*.json")) == sorted(case.name for case in CASES)
    assert len({case.name for case in CASES}) == len(CASES)


def test_the_comparison_reports_every_kind_of_difference():
    expected = {"run": {"loss_formula": "loss = 1.0 * ce"}, "teacher": {"test": {"mae": 0.5, "n": 3}}}
    assert differences(expected, {"run": {"loss_formula": "loss = 1.0 * ce"},
                                  "teacher": {"test": {"mae": 0.5 + 5e-7, "n": 3}}}) == []
    assert differences({"x": float("nan")}, {"x": float("nan")}) == []
    found = differences(expected, {"run": {"loss_formula": "loss = 0.5 * ce"},
                                   "teacher": {"test": {"mae": 0.5 + 2e-6, "n": 3}}, "student": {}})
    assert len(found) == 3
    assert any("keys" in line for line in found) and any("teacher.test.mae" in line for line in found)
    assert any("run.loss_formula" in line for line in found)
    assert differences({"x": None}, {"x": 0.0}) and differences({"x": 1}, {"x": True})
