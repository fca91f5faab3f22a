"""The `recdistill` command: subcommands, help and clean errors."""

import logging
import os
import subprocess
import sys

import pytest


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


def rows_of(table: str) -> dict[str, str]:
    """property -> value of a two-column rich table."""
    return {line.split("│")[1].strip(): line.split("│")[2].strip() for line in table.splitlines()
            if line.count("│") == 3 and line.split("│")[1].strip()}


def test_data_info_takes_the_overrides_train_takes(tmp_path):
    """Your own file, and a given split's three files, described with `train`'s overrides."""
    for part, rows in (("train", "u\ti\n005\ta\n5\ta\n5\tb\n"), ("valid", "u\ti\n005\tb\n"),
                       ("test", "u\ti\n5\tc\n")):
        (tmp_path / f"{part}.tsv").write_text(rows, encoding="utf-8")
    mapping = ["dataset.columns.user=u", "dataset.columns.item=i", f"cache_dir={tmp_path / 'cache'}"]
    own = cli("data", "info", "dataset=files", f"dataset.path={tmp_path / 'train.tsv'}", *mapping, cwd=tmp_path)
    assert own.returncode == 0, own.stderr
    assert rows_of(own.stdout)["n_users"] == "2" and rows_of(own.stdout)["n_items"] == "2"  # 005 and 5: two users
    given = cli("data", "info", "dataset=files", "split=given", *mapping,
                *(f"split.{part}={tmp_path / (part + '.tsv')}" for part in ("train", "valid", "test")), cwd=tmp_path)
    assert given.returncode == 0, given.stderr
    assert "union of the given split's files" in given.stdout
    lines = rows_of(given.stdout)
    assert lines["n_users"] == "2" and lines["n_items"] == "3" and lines["n_interactions"] == "5"
    bad = cli("data", "info", "dataset.path=x", cwd=tmp_path)
    assert bad.returncode == 2 and "name the dataset" in bad.stderr


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


@pytest.mark.parametrize("args, message", [
    (["trainer.student.lrr=1"], "Key 'lrr' not in"),  # unknown key
    (["teacher=nope"], "Could not find 'teacher/nope'"),  # unknown group option
    (["-m", "seed=1,abc"], "could not be converted to Integer"),  # wrong type, in a sweep (-m comes first)
])
def test_a_composition_error_exits_2_with_one_message(tmp_path, args, message):
    result = cli("train", *args, "+experiment=synthetic_kd", f"hydra.run.dir={tmp_path / 'run'}",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr and "Config search path" not in result.stderr
    assert not (tmp_path / "run").exists()  # no job ran (a sweep folder holds at most Hydra's multirun.yaml)
    assert not [path for path in tmp_path.glob("sweep/*") if path.is_dir()]


def test_a_crash_inside_a_job_keeps_its_exception_even_when_it_comes_from_omegaconf(tmp_path, monkeypatch):
    """A pipeline bug that raises an OmegaConf error is a crash (traceback, non-zero exit), not a
    configuration error: only errors of composition exit 2."""
    from omegaconf.errors import ConfigKeyError

    from recdistill.cli import main
    from recdistill.run import spine

    def buggy_run(cfg, run_dir):
        raise ConfigKeyError("Key 'no_such_key' is not in struct")

    monkeypatch.setattr(spine, "run", buggy_run)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    root = logging.getLogger()
    handlers, level, environment = list(root.handlers), root.level, dict(os.environ)
    try:
        with pytest.raises(ConfigKeyError, match="no_such_key"):
            main(["train", "+experiment=synthetic_kd", "hydra.run.dir=run", f"cache_dir={tmp_path / 'cache'}"])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert dict(os.environ) == environment  # HYDRA_FULL_ERROR is set only while Hydra runs
