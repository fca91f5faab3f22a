"""The `recdistill` command: subcommands, help and clean errors."""

import subprocess
import sys


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "recdistill.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_help_lists_the_subcommands(tmp_path):
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("train", "data fetch", "data info", "compare"):
        assert command in result.stdout


def test_unknown_command_is_an_error(tmp_path):
    result = cli("fit", cwd=tmp_path)
    assert result.returncode == 2 and "usage" in result.stderr


def test_data_info_describes_a_dataset(tmp_path):
    result = cli("data", "info", "synthetic", "--cache-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "interactions" in result.stdout and "users" in result.stdout


def test_fetching_synthetic_data_is_a_clean_error(tmp_path):
    result = cli("data", "fetch", "synthetic", cwd=tmp_path)
    assert result.returncode == 2
    assert "nothing to fetch" in result.stderr and "Traceback" not in result.stderr


def test_compare_without_results_is_a_clean_error(tmp_path):
    result = cli("compare", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "no metrics.json" in result.stderr


def test_train_help_shows_the_config_groups(tmp_path):
    result = cli("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for group in ("dataset", "teacher", "student", "distill", "split", "trainer", "evaluator"):
        assert group in result.stdout
