"""A user's own TSV, end to end: string ids with leading zeros, half-star ratings, a UTF-8 title
column in the interactions file and ISO dates, with no side files; then the same file edited in
place (a new split and a new teacher, never a stale one) and with users removed (no IndexError)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.errors import ConfigError
from recdistill.run.spine import run

TITLES = ["Café Chérie", "Ōkami", "Straße", "Plain", "Niño", "Smörgås"]


def write_tsv(path: Path, n_users: int = 30, seed: int = 0, all_fives: bool = False) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        user = f"{u:03d}" if u % 2 else str(u)  # "001" and "1" style ids side by side: all distinct text
        for t, item in enumerate(rng.choice(24, size=12, replace=False)):
            rating = 5.0 if all_fives else float(rng.integers(1, 11)) / 2  # 0.5 .. 5
            day = pd.Timestamp("2021-01-01") + pd.Timedelta(days=int(u + 3 * t))
            rows.append((user, f"m{item:02d}", rating, day.isoformat(), TITLES[item % len(TITLES)] + f" {item}"))
    frame = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "when", "title"])
    frame.to_csv(path, sep="\t", index=False, encoding="utf-8")


RANK = ("teacher.dim=16", "student.dim=8", "distill.teacher_topk=10", "distill.terms.rrd.n_interesting=5",
        "distill.terms.rrd.n_uninteresting=5")  # a 24-item catalogue


def compose_run(experiment: str, path: Path, cache: Path, *extra: str):
    register_schemas()
    GlobalHydra.instance().clear()
    overrides = [f"+experiment={experiment}", "device=cpu", f"cache_dir={cache}", "dataset=files",
                 f"dataset.path={path}", "dataset.columns.user=userId", "dataset.columns.item=movieId",
                 "dataset.columns.rating=rating", "dataset.columns.timestamp=when", "dataset.columns.item_side=[title]",
                 "dataset.rating_scale=[0.5,5,0.5]", *extra]
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.slow
def test_a_users_tsv_runs_rating_and_ranking_and_an_edit_never_reuses_a_stale_split(tmp_path):
    data, cache = tmp_path / "ratings.tsv", tmp_path / "cache"
    write_tsv(data)
    rating = run(compose_run("synthetic_kd", data, cache), tmp_path / "rating")
    assert set(rating) >= {"teacher", "student", "student_kd"}
    report = json.loads((tmp_path / "rating" / "data_report.json").read_text())
    assert report["n_users"] == 30 and report["rating_scale"] == [0.5, 5.0, 0.5] and report["encoding"] == "utf-8"
    assert len(report["rating_histogram"]) > 5  # half stars kept as their own values
    assert 0 <= rating["teacher"]["test"]["accuracy"] <= 1 and rating["teacher"]["test"]["mae"] < 4.5

    ranking = run(compose_run("synthetic_rank_kd", data, cache, *RANK), tmp_path / "ranking")
    assert "ndcg@10" in ranking["teacher"]["test"]
    with pytest.raises(ConfigError, match=r"distill.teacher_topk=100 must be below the number of items \(24\)"):
        run(compose_run("synthetic_rank_kd", data, cache, "teacher.dim=16"), tmp_path / "too_many")
    first_key = ranking["run"]["split_key"]

    write_tsv(data, all_fives=True)  # edited in place: same path, new content
    edited = run(compose_run("synthetic_rank_kd", data, cache, *RANK),
                 tmp_path / "edited")
    assert edited["run"]["split_key"] != first_key
    assert edited["run"]["data_fingerprint"] != ranking["run"]["data_fingerprint"]
    assert edited["run"]["teacher_key"] != ranking["run"]["teacher_key"] and not edited["run"]["teacher_from_cache"]

    write_tsv(data, n_users=20)  # ten users fewer: a new split, no IndexError from a stale one
    fewer = run(compose_run("synthetic_rank_kd", data, cache, *RANK), tmp_path / "fewer")
    assert json.loads((tmp_path / "fewer" / "data_report.json").read_text())["n_users"] == 20
    assert fewer["run"]["split_key"] not in (first_key, edited["run"]["split_key"])


@pytest.mark.slow
def test_a_run_with_a_relative_data_path_resumes_from_another_folder(tmp_path):
    """The config keeps `dataset.path=ratings.tsv` as typed; resume works from where the run started."""
    import subprocess
    import sys

    start, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    write_tsv(start / "ratings.tsv", n_users=12)
    env = {"RECDISTILL_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def cli(*args, cwd):
        return subprocess.run([sys.executable, "-m", "recdistill.cli", *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=300)

    first = cli("train", "+experiment=synthetic_kd", "dataset=files", "dataset.path=ratings.tsv",
                "dataset.columns.user=userId", "dataset.columns.item=movieId", "dataset.columns.rating=rating",
                "dataset.columns.timestamp=when", "dataset.rating_scale=[0.5,5,0.5]", f"hydra.run.dir={tmp_path / 'run'}",
                cwd=start)
    assert first.returncode == 0, first.stderr[-2000:]
    (tmp_path / "run" / "metrics.json").unlink()  # as if it had been killed before writing its results
    again = cli("train", f"resume={tmp_path / 'run'}", cwd=elsewhere)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["teacher"]["test"]
